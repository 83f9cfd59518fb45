/*
 * Stress test of src_c/fastvae/pool.h (run by tests/test_pool.py): jobs of
 * many phases whose blocks check that every block of the previous phase is
 * done and that no block runs twice, with random sleeps that play a thread
 * descheduled by another process. Every job's output must equal the inline
 * (one-thread) run. Usage: pool_stress N_THREADS N_JOBS
 */
#include <stdio.h>

#include "fastvae/pool.h"

#define NP 40
#define NB 13

typedef struct {
    long v[NP][NB];
    int sleepy;
} job_ctx;

static int n_blocks[NP];
static volatile int failed = 0;

static void block(void *c_, int p, int b, int tid)
{
    job_ctx *c = (job_ctx *)c_;
    long s = 0;
    (void)tid;
    for (int i = 0; p > 0 && i < n_blocks[p - 1]; i++) {
        if (c->v[p - 1][i] == 0) {
            fprintf(stderr, "phase %d block %d ran before phase %d was done\n", p, b, p - 1);
            failed = 1;
        }
        s += c->v[p - 1][i];
    }
    if (c->v[p][b] != 0) {
        fprintf(stderr, "phase %d block %d ran twice\n", p, b);
        failed = 1;
    }
    if (c->sleepy && (p * NB + b) % c->sleepy == 0)
        usleep(200);
    c->v[p][b] = s % 1000003 + b + 1;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int nt = atoi(argv[1]), jobs = atoi(argv[2]);
    for (int p = 0; p < NP; p++)
        n_blocks[p] = p % 3 == 0 ? 1 : NB;
    static job_ctx ref, c;
    fv_pool_run_inline(block, &ref, NP, n_blocks);
    for (int it = 0; it < jobs && !failed; it++) {
        memset(&c, 0, sizeof c);
        c.sleepy = it % 5 == 0 ? 3 + it % 11 : 0;
        fv_pool_run(block, &c, NP, n_blocks, nt);
        if (memcmp(&c.v, &ref.v, sizeof c.v) != 0) {
            fprintf(stderr, "job %d differs from the inline run\n", it);
            return 1;
        }
    }
    if (failed)
        return 1;
    printf("ok\n");
    return 0;
}
