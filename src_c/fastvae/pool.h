/*
 * fastvae's thread pool: a job is a sequence of phases, each cut into fixed
 * blocks; whichever thread is running takes the next block.
 *
 * Why not an OpenMP team with barriers: on a machine where other processes
 * compete for the cores (a laptop, a CI runner, a shared node), a thread of
 * the team is regularly descheduled for a whole scheduler time slice. With a
 * static split every barrier then waits for it, and with libgomp's default
 * wait policy the waiting threads spin through their own slice as well:
 * measured here, one busy competitor made the default 2-thread training step
 * 22x slower than one thread. This pool has neither problem:
 *
 *  - Work is handed out dynamically: a phase's blocks are claimed from a
 *    counter, so blocks a descheduled thread has not started are done by
 *    the threads that run. A block of phase p starts only when every block
 *    of phase p - 1 is done (a completion count, not a barrier: a thread
 *    that claimed nothing in a phase never waits for it, and a thread that
 *    is late skips phases whose blocks are all taken).
 *  - Waiting is bounded: a thread spins at most FV_POOL_SPIN_NS, then
 *    sleeps on a futex until the phase completes (or a job arrives), which
 *    also frees its core for the thread it waits for.
 *  - Whether to share a job at all is measured, not assumed. Linux shares
 *    the CPU fairly between groups of threads (a terminal session, a
 *    service), so where other processes keep the cores busy, two threads
 *    of this process together get about the CPU time one would get alone,
 *    and then they only wait on each other's blocks: measured here with two
 *    busy loops in their own sessions on 2 cores, two threads ran the
 *    784-400/20/128 step at 0.6x the speed of one. So for each kind of job
 *    (same function, phases, blocks and thread count) the caller measures
 *    the process's CPU time over windows of jobs (FV_POOL_WINDOW_NS): when
 *    shared jobs got less than FV_POOL_MIN_CORES cores, the next jobs run
 *    inline on the caller alone. A window of shared jobs is tried again
 *    after a stay inline (100 ms, doubling to 2 s while such trials fail,
 *    as under a CPU quota), at the first look (one every 100 ms) that finds
 *    the machine had a free core (idle CPU time in /proc/stat). A pause
 *    in a kind's jobs starts its judgement afresh. On an idle machine
 *    shared jobs get about n_threads cores and nothing changes. Which
 *    threads compute the blocks never changes a result.
 *  - Results do not depend on who computes a block: callers give every
 *    block a fixed piece of the output and keep every reduction in a fixed
 *    order (or in integers), so they are bitwise equal for any thread count
 *    and any scheduling. `tid` (0 = the caller, < n_threads) only indexes
 *    per-thread scratch.
 *
 * One pool per process (per extension module that includes this header;
 * only fastvae._core._step does). One job runs at a time; a caller that finds the
 * pool busy (another Python thread's job) runs its job alone, inline, with
 * the same results. After fork() the child starts a new pool.
 *
 * Memory ordering: the caller writes the job, then publishes its
 * generation `gen` with a release store. Claims and completion counts are
 * 64-bit words (generation << 32 | count), so a thread that is late never
 * acts on an older or newer job: its compare-and-swap fails. A successful
 * claim of a block of job g proves that job g is still running (it cannot
 * finish before that block is done), so the job's function and context are
 * read only after one.
 */
#ifndef FASTVAE_POOL_H
#define FASTVAE_POOL_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FV_POOL_PAUSE() _mm_pause()
#else
#define FV_POOL_PAUSE() __asm__ __volatile__("" ::: "memory")
#endif

#include "fastvae/fpenv.h"

#define FV_POOL_MAX_THREADS 256
#define FV_POOL_MAX_PHASES  256
/* How long a thread spins before it sleeps: long enough to cover the gap
 * between two training steps and a typical block (tens of microseconds),
 * far below a scheduler time slice (milliseconds). */
#ifndef FV_POOL_SPIN_NS
#define FV_POOL_SPIN_NS 50000
#endif

/* The choice between shared and inline runs (see the top); FV_POOL_ADAPT=0
 * shares every job (the protocol tests want that). */
#ifndef FV_POOL_ADAPT
#define FV_POOL_ADAPT 1
#endif
#define FV_POOL_KINDS 8 /* kinds of job remembered */
/* Shared jobs must get more than this many cores' worth of CPU time. */
#define FV_POOL_MIN_CORES 1.15
/* Times in ns: CPU time is judged over windows of jobs, not single jobs,
 * which vary with every time slice. */
#define FV_POOL_WINDOW_NS     30000000LL
#define FV_POOL_STAY_FIRST_NS 100000000LL
#define FV_POOL_STAY_MAX_NS   2000000000LL
#define FV_POOL_GAP_NS        100000000LL /* a pause between two jobs of a kind */

/* Block `block` of phase `phase` of a job, on thread `tid`. */
typedef void (*fv_pool_fn)(void *ctx, int phase, int block, int tid);

typedef struct {
    uint64_t word;
    char pad_[64 - sizeof(uint64_t)];
} fv_pool_slot;

typedef struct {
    uint32_t v;
    char pad_[64 - sizeof(uint32_t)];
} fv_pool_flag;

/* What the caller knows about one kind of job. */
typedef struct {
    fv_pool_fn fn; /* the kind: fn, phases, blocks, threads; fn NULL: unused */
    int n_phases, blocks, n_threads;
    uint64_t used;      /* when last used, in jobs */
    int inline_mode;    /* the way chosen: shared (0) or inline (1) */
    int trial;          /* 1 while a shared run is tried */
    int64_t stay_ns;    /* length of a stay inline before a trial */
    int64_t next_check; /* when to look for a free core next */
    double idle0;       /* the machine's idle CPU seconds at idle_t; < 0: unknown */
    int64_t idle_t;
    int64_t last_end;        /* when the last job of the kind ended */
    int64_t wall_ns, cpu_ns; /* the window so far: wall and process CPU time */
    int jobs;                /* and its jobs */
} fv_pool_kind;

typedef struct {
    fv_pool_slot claim[FV_POOL_MAX_PHASES + 1];
    fv_pool_slot done[FV_POOL_MAX_PHASES];
    fv_pool_slot join;     /* gen << 32 | helpers that joined */
    fv_pool_flag gen;      /* the running job's generation; futex of idle workers */
    fv_pool_flag progress; /* futex of threads waiting for a phase to complete */
    fv_pool_flag sleepers; /* threads asleep on `progress` */
    fv_pool_flag idle;     /* workers asleep on `gen` */
    /* The job, written by the caller before it publishes gen. */
    fv_pool_fn fn;
    void *ctx;
    int n_blocks[FV_POOL_MAX_PHASES];
    int max_helpers;
    /* Owned by whoever holds `busy`. */
    pthread_mutex_t busy;
    int n_workers;
    uint32_t last_gen;
    uint64_t jobs;
    fv_pool_kind kinds[FV_POOL_KINDS];
    pid_t pid;
    pthread_t workers[FV_POOL_MAX_THREADS];
} fv_pool;

#define FV_LOAD(p)         __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define FV_LOAD_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)

static inline int64_t fv_pool_clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t fv_pool_now_ns(void)
{
    return fv_pool_clock_ns(CLOCK_MONOTONIC);
}

static inline void fv_pool_futex_wait(uint32_t *word, uint32_t expected)
{
#if defined(__linux__)
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
#else
    (void)word, (void)expected;
    sched_yield();
#endif
}

static inline void fv_pool_futex_wake(uint32_t *word, int n)
{
#if defined(__linux__)
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
#else
    (void)word, (void)n;
#endif
}

/* Wait until `done` of phase p of job g counts all its blocks. */
static void fv_pool_wait_phase(fv_pool *P, uint32_t g, int p)
{
    const uint64_t want = ((uint64_t)g << 32) | (uint32_t)P->n_blocks[p];
    if (FV_LOAD(&P->done[p].word) == want)
        return;
    int64_t until = fv_pool_now_ns() + FV_POOL_SPIN_NS;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (FV_LOAD(&P->done[p].word) == want)
                return;
            FV_POOL_PAUSE();
        }
        if (fv_pool_now_ns() > until)
            break;
    }
    for (;;) {
        uint32_t seen = __atomic_load_n(&P->progress.v, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&P->sleepers.v, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&P->done[p].word, __ATOMIC_SEQ_CST) == want) {
            __atomic_fetch_sub(&P->sleepers.v, 1, __ATOMIC_SEQ_CST);
            return;
        }
        fv_pool_futex_wait(&P->progress.v, seen);
        __atomic_fetch_sub(&P->sleepers.v, 1, __ATOMIC_SEQ_CST);
        if (FV_LOAD(&P->done[p].word) == want)
            return;
    }
}

/* A phase just completed: wake whoever sleeps waiting for one. */
static inline void fv_pool_phase_done(fv_pool *P)
{
    __atomic_fetch_add(&P->progress.v, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&P->sleepers.v, __ATOMIC_SEQ_CST))
        fv_pool_futex_wake(&P->progress.v, INT_MAX);
}

/* Take and run blocks of job g, phase by phase, until none is left. */
static void fv_pool_participate(fv_pool *P, uint32_t g, int tid)
{
    for (int p = 0; p < FV_POOL_MAX_PHASES; p++) {
        for (;;) {
            uint64_t c = FV_LOAD(&P->claim[p].word);
            if ((uint32_t)(c >> 32) != g)
                return; /* another job, or past the last phase */
            uint32_t next = (uint32_t)c;
            uint32_t nb = (uint32_t)FV_LOAD_RELAXED(&P->n_blocks[p]);
            if (next >= nb)
                break; /* all taken: on to the next phase */
            if (!__atomic_compare_exchange_n(&P->claim[p].word, &c, c + 1, 1, __ATOMIC_ACQ_REL,
                                             __ATOMIC_ACQUIRE))
                continue;
            if (p > 0)
                fv_pool_wait_phase(P, g, p - 1);
            P->fn(P->ctx, p, (int)next, tid);
            uint64_t d = __atomic_add_fetch(&P->done[p].word, 1, __ATOMIC_SEQ_CST);
            if ((uint32_t)d == nb)
                fv_pool_phase_done(P);
        }
    }
}

static void *fv_pool_worker(void *arg)
{
    fv_pool *P = (fv_pool *)arg;
    uint32_t seen = FV_LOAD(&P->gen.v);
    /* Workers only ever run fastvae's kernels: flush denormals for good. */
    (void)fv_flush_denormals_begin();
    for (;;) {
        uint32_t g = FV_LOAD(&P->gen.v);
        if (g == seen) {
            int64_t until = fv_pool_now_ns() + FV_POOL_SPIN_NS;
            while (g == seen && fv_pool_now_ns() < until) {
                for (int i = 0; i < 64 && g == seen; i++) {
                    FV_POOL_PAUSE();
                    g = FV_LOAD(&P->gen.v);
                }
            }
            while (g == seen) {
                __atomic_fetch_add(&P->idle.v, 1, __ATOMIC_SEQ_CST);
                g = __atomic_load_n(&P->gen.v, __ATOMIC_SEQ_CST);
                if (g == seen)
                    fv_pool_futex_wait(&P->gen.v, seen);
                __atomic_fetch_sub(&P->idle.v, 1, __ATOMIC_SEQ_CST);
                g = FV_LOAD(&P->gen.v);
            }
        }
        seen = g;
        uint64_t j = FV_LOAD(&P->join.word);
        while ((uint32_t)(j >> 32) == g &&
               (int)(uint32_t)j < FV_LOAD_RELAXED(&P->max_helpers)) {
            if (__atomic_compare_exchange_n(&P->join.word, &j, j + 1, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                fv_pool_participate(P, g, (int)(uint32_t)j + 1);
                break;
            }
        }
    }
    return NULL;
}

static fv_pool *fv_pool_instance = NULL;
static pthread_mutex_t fv_pool_create_lock = PTHREAD_MUTEX_INITIALIZER;

/* The process's pool (a new one in a forked child); NULL without memory. */
static fv_pool *fv_pool_get(void)
{
    pid_t pid = getpid();
    fv_pool *P = __atomic_load_n(&fv_pool_instance, __ATOMIC_ACQUIRE);
    if (P && P->pid == pid)
        return P;
    pthread_mutex_lock(&fv_pool_create_lock);
    P = fv_pool_instance;
    if (!P || P->pid != pid) {
        /* After fork() the parent's workers do not exist here; its pool is
         * left as it was (a worker may have held it mid-job). */
        P = (fv_pool *)aligned_alloc(64, (sizeof(fv_pool) + 63) / 64 * 64);
        if (P) {
            memset(P, 0, sizeof *P);
            pthread_mutex_init(&P->busy, NULL);
            P->pid = pid;
            __atomic_store_n(&fv_pool_instance, P, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&fv_pool_create_lock);
    return P;
}

/* Start workers until there are n (under P->busy); returns how many run. */
static int fv_pool_grow(fv_pool *P, int n)
{
    while (P->n_workers < n) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int err = pthread_create(&P->workers[P->n_workers], &attr, fv_pool_worker, P);
        pthread_attr_destroy(&attr);
        if (err)
            break;
        P->n_workers++;
    }
    return P->n_workers;
}

static void fv_pool_run_inline(fv_pool_fn fn, void *ctx, int n_phases, const int *n_blocks)
{
    for (int p = 0; p < n_phases; p++)
        for (int b = 0; b < n_blocks[p]; b++)
            fn(ctx, p, b, 0);
}

/* CPU time of every thread of the process. */
static inline int64_t fv_pool_cpu_ns(void)
{
    return fv_pool_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

/* Seconds every CPU of the machine spent idle since boot (Linux's
 * /proc/stat); -1 where that cannot be read. */
static double fv_pool_idle_seconds(void)
{
#if defined(__linux__)
    static long hz = 0;
    if (hz == 0)
        hz = sysconf(_SC_CLK_TCK);
    char buf[256];
    int fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || hz <= 0) {
        if (fd >= 0)
            close(fd);
        return -1.0;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1.0;
    buf[n] = 0;
    /* "cpu  user nice system idle iowait ...", in clock ticks */
    unsigned long long v[5];
    if (sscanf(buf, "cpu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4]) != 5)
        return -1.0;
    return (double)(v[3] + v[4]) / (double)hz;
#else
    return -1.0;
#endif
}

/* Start looking for a free core at `now`, next after `after` ns. */
static void fv_pool_watch(fv_pool_kind *k, int64_t now, int64_t after)
{
    k->next_check = now + after;
    k->idle0 = fv_pool_idle_seconds();
    k->idle_t = now;
}

/* The record of this kind of job (the least recently used one is reused). */
static fv_pool_kind *fv_pool_kind_of(fv_pool *P, fv_pool_fn fn, int n_phases,
                                     const int *n_blocks, int n_threads, int64_t now)
{
    int blocks = 0;
    for (int p = 0; p < n_phases; p++)
        blocks += n_blocks[p];
    fv_pool_kind *k = &P->kinds[0];
    for (int i = 0; i < FV_POOL_KINDS; i++) {
        fv_pool_kind *c = &P->kinds[i];
        if (c->fn == fn && c->n_phases == n_phases && c->blocks == blocks &&
            c->n_threads == n_threads) {
            k = c;
            goto found;
        }
        if (c->used < k->used)
            k = c;
    }
    memset(k, 0, sizeof *k);
    k->fn = fn;
    k->n_phases = n_phases;
    k->blocks = blocks;
    k->n_threads = n_threads;
    k->stay_ns = FV_POOL_STAY_FIRST_NS;
found:
    k->used = ++P->jobs;
    if (k->last_end && now - k->last_end > FV_POOL_GAP_NS) {
        /* After a pause the machine may be another: judge afresh. */
        k->wall_ns = k->cpu_ns = 0;
        k->jobs = 0;
        k->stay_ns = FV_POOL_STAY_FIRST_NS;
        if (k->inline_mode)
            fv_pool_watch(k, now, FV_POOL_STAY_FIRST_NS);
    }
    return k;
}

/* Account a job of kind k that ran inline or shared, ended at `now` and
 * took `wall` ns and `cpu` ns of the process's CPU time; at the end of a
 * window, choose the way of the next jobs (see the top). */
static void fv_pool_account(fv_pool_kind *k, int was_inline, int64_t now, int64_t wall,
                            int64_t cpu)
{
    k->last_end = now;
    k->wall_ns += wall;
    k->cpu_ns += cpu;
    k->jobs++;
    if (k->wall_ns < FV_POOL_WINDOW_NS || k->jobs < 4)
        return;
    double cores = (double)k->cpu_ns / (double)k->wall_ns;
    k->wall_ns = k->cpu_ns = 0;
    k->jobs = 0;
#ifdef FV_POOL_TRACE
    fprintf(stderr, "pool: %s%s window: %.2f cores\n", k->trial ? "trial " : "",
            was_inline ? "inline" : "shared", cores);
#endif
    if (!was_inline) {
        if (cores < FV_POOL_MIN_CORES) {
            /* After a failed trial, stay inline twice as long. */
            int64_t longer =
                2 * k->stay_ns < FV_POOL_STAY_MAX_NS ? 2 * k->stay_ns : FV_POOL_STAY_MAX_NS;
            k->stay_ns = k->trial ? longer : FV_POOL_STAY_FIRST_NS;
            k->inline_mode = 1;
            fv_pool_watch(k, now, k->stay_ns);
        } else {
            k->inline_mode = 0;
        }
        k->trial = 0;
        return;
    }
    if (now < k->next_check)
        return;
    /* Shared jobs are worth a trial once the machine has a free core: idle
     * for half of the time since the last look at least (where /proc/stat
     * is not there, once the caller had a whole core). Trials at other
     * times would mostly meet a competitor's burst and fail. */
    double idle = fv_pool_idle_seconds(), free_cores;
    if (idle >= 0 && k->idle0 >= 0 && now > k->idle_t)
        free_cores = (idle - k->idle0) / ((double)(now - k->idle_t) * 1e-9);
    else
        free_cores = cores > 0.9 ? 1.0 : 0.0;
#ifdef FV_POOL_TRACE
    fprintf(stderr, "pool: %.2f cores free since the last look\n", free_cores);
#endif
    if (free_cores >= 0.5)
        k->trial = 1;
    else
        fv_pool_watch(k, now, FV_POOL_STAY_FIRST_NS);
}

/* Publish a job to `helpers` workers and take part in it (under P->busy). */
static void fv_pool_run_shared(fv_pool *P, fv_pool_fn fn, void *ctx, int n_phases,
                               const int *n_blocks, int helpers)
{
    uint32_t g = P->last_gen + 1;
    if (g == 0)
        g = 1; /* generation 0 marks the end of a job's phases */
    P->last_gen = g;
    P->fn = fn;
    P->ctx = ctx;
    __atomic_store_n(&P->max_helpers, helpers, __ATOMIC_RELAXED);
    for (int p = 0; p < n_phases; p++) {
        __atomic_store_n(&P->n_blocks[p], n_blocks[p], __ATOMIC_RELAXED);
        __atomic_store_n(&P->done[p].word, (uint64_t)g << 32, __ATOMIC_RELAXED);
        __atomic_store_n(&P->claim[p].word, (uint64_t)g << 32, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&P->claim[n_phases].word, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&P->join.word, (uint64_t)g << 32, __ATOMIC_RELAXED);
    __atomic_store_n(&P->gen.v, g, __ATOMIC_SEQ_CST);
    if (helpers > 0 && __atomic_load_n(&P->idle.v, __ATOMIC_SEQ_CST))
        fv_pool_futex_wake(&P->gen.v, helpers);
    fv_pool_participate(P, g, 0);
    fv_pool_wait_phase(P, g, n_phases - 1);
}

/* Run a job of n_phases phases (phase p has n_blocks[p] >= 1 blocks) on up
 * to n_threads threads, the caller included; returns when every block is
 * done. Denormals are flushed to zero while it runs, on every thread. */
static void fv_pool_run(fv_pool_fn fn, void *ctx, int n_phases, const int *n_blocks,
                        int n_threads)
{
    fv_fpenv env = fv_flush_denormals_begin();
    fv_pool *P = n_threads > 1 && n_phases <= FV_POOL_MAX_PHASES ? fv_pool_get() : NULL;
    if (!P || pthread_mutex_trylock(&P->busy) != 0) {
        fv_pool_run_inline(fn, ctx, n_phases, n_blocks);
        fv_flush_denormals_end(env);
        return;
    }
    if (n_threads > FV_POOL_MAX_THREADS)
        n_threads = FV_POOL_MAX_THREADS;
    int helpers = fv_pool_grow(P, n_threads - 1);
    if (helpers > n_threads - 1)
        helpers = n_threads - 1;
    fv_pool_kind *kind = NULL;
    int64_t t0 = 0, c0 = 0;
    if (FV_POOL_ADAPT && helpers > 0) {
        t0 = fv_pool_now_ns();
        kind = fv_pool_kind_of(P, fn, n_phases, n_blocks, n_threads, t0);
        c0 = fv_pool_cpu_ns();
    }
    int alone = kind && kind->inline_mode && !kind->trial;
    if (alone)
        fv_pool_run_inline(fn, ctx, n_phases, n_blocks);
    else
        fv_pool_run_shared(P, fn, ctx, n_phases, n_blocks, helpers);
    if (kind) {
        int64_t c1 = fv_pool_cpu_ns(), t1 = fv_pool_now_ns();
        fv_pool_account(kind, alone, t1, t1 - t0, c1 - c0);
    }
    pthread_mutex_unlock(&P->busy);
    fv_flush_denormals_end(env);
}

#undef FV_LOAD
#undef FV_LOAD_RELAXED

#endif /* FASTVAE_POOL_H */
