/*
 * Stress test of src_c/fastvae/pool.h (run by tests/test_pool.py): jobs of
 * many phases whose blocks check that every block of the previous phase is
 * done and that no block runs twice, with random sleeps that play a thread
 * descheduled by another process. Every job's output must equal the inline
 * (one-thread) run. Usage: pool_stress N_THREADS N_JOBS
 *
 * `pool_stress adapt` checks the choice between shared and inline jobs
 * instead (build without FV_POOL_ADAPT=0): helpers that sleep in every
 * block, like threads a competing process deschedules, make the caller
 * work alone; once they compute again, jobs are shared again.
 */
#include <stdio.h>

#include "fastvae/pool.h"

#define NP 40
#define NB 13

typedef struct {
    long v[NP][NB];
    int sleepy;
    int late_helpers; /* blocks on tid > 0 sleep this many microseconds */
    int spin_us;      /* every block computes this long */
} job_ctx;

static int n_blocks[NP];
static volatile int failed = 0;

static void block(void *c_, int p, int b, int tid)
{
    job_ctx *c = (job_ctx *)c_;
    long s = 0;
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
    if (c->late_helpers && tid > 0)
        usleep(c->late_helpers);
    if (c->spin_us) {
        int64_t until = fv_pool_now_ns() + 1000 * (int64_t)c->spin_us;
        while (fv_pool_now_ns() < until)
            ;
    }
    c->v[p][b] = s % 1000003 + b + 1;
}

/* The kind record of the jobs below (one kind: same fn, phases, blocks). */
static fv_pool_kind *the_kind(void)
{
    for (int i = 0; i < FV_POOL_KINDS; i++)
        if (fv_pool_instance->kinds[i].fn == block)
            return &fv_pool_instance->kinds[i];
    return NULL;
}

/* Jobs whose helpers sleep in every block (the process gets less than a
 * core's worth of CPU time, as when its threads are descheduled), then jobs
 * where every thread computes. */
static int adapt(void)
{
    static job_ctx c;
    int inline_seen = 0, shared_again = 0;
    for (int it = 0; it < 200 && !inline_seen; it++) {
        memset(&c, 0, sizeof c);
        c.late_helpers = 2000;
        c.spin_us = 20;
        fv_pool_run(block, &c, NP, n_blocks, 2);
        inline_seen = the_kind()->inline_mode;
    }
    if (!inline_seen) {
        fprintf(stderr, "helpers that got no CPU time never made the caller work alone\n");
        return 1;
    }
    /* Back to shared once a trial finds a second core: within 20 s. */
    int64_t start = fv_pool_now_ns(), until = start + 20000000000LL;
    double idle0 = fv_pool_idle_seconds();
    while (!shared_again && fv_pool_now_ns() < until) {
        memset(&c, 0, sizeof c);
        c.spin_us = 20;
        fv_pool_run(block, &c, NP, n_blocks, 2);
        shared_again = !the_kind()->inline_mode && !the_kind()->trial;
    }
    if (!shared_again) {
        /* Staying inline is right while other processes take the other
         * core: then the test cannot tell, and says so (exit status 3). */
        double seconds = (double)(fv_pool_now_ns() - start) * 1e-9;
        double free_cores = (fv_pool_idle_seconds() - idle0) / seconds;
        if (idle0 >= 0 && free_cores < 0.5) {
            fprintf(stderr, "inconclusive: the machine had %.2f idle cores in %.0f s\n",
                    free_cores, seconds);
            return 3;
        }
        fprintf(stderr, "jobs stayed inline after the helpers could run (%.2f idle cores)\n",
                free_cores);
        return 1;
    }
    printf("ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "adapt") == 0) {
        for (int p = 0; p < NP; p++)
            n_blocks[p] = p % 3 == 0 ? 1 : NB;
        return adapt();
    }
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
