/* Body of dispatch.h's fv_dispatch_probe, included once per level by
 * dispatch_each.h; not a standalone header. */

FV_KERNEL int FV_K(fv_dispatch_probe)(int x)
{
    (void)x;
    return FV_LEVEL;
}
