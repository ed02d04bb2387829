/* Unit tests for mem.c's heap policy: what ls_mem_policy changes in glibc's
 * malloc, seen as page faults and resident memory.
 *
 * The case it is for: a thread allocates many small blocks (librdkafka's
 * broker thread, a fetched message each), another thread frees them (the
 * main loop), the first allocates again. Under glibc's defaults the freed
 * top of that thread's heap goes back to the kernel and every page faults in
 * again; with the fast policy, the second round reuses it. The run under the
 * defaults is done in a child process forked first, which shows the check can
 * tell the two apart. Then: blocks up to 32 MiB come from the heap, not their
 * own mmap; back to the small policy, the kept memory goes back at once; and
 * GLIBC_TUNABLES wins. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mem.h"

#if defined(__SANITIZE_ADDRESS__)
int main(void) {
  puts("skipped: AddressSanitizer has its own allocator");
  return 0;
}
#else
#include "check.h"

#define NBLOCKS 4096
#define BLOCK 4000 /* 16 MB in all: under the 64 MiB kept, over glibc's 128 KiB */

static void *blocks[NBLOCKS];
static long faults[2];

static long thread_faults(void) {
  struct rusage ru;
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_minflt;
}

static void fill(void) {
  for (int i = 0; i < NBLOCKS; i++) {
    blocks[i] = malloc(BLOCK);
    if (!blocks[i]) ls_out_of_memory(BLOCK);
    memset(blocks[i], i & 0xff, BLOCK);
  }
}

static void drain(void) {
  for (int i = NBLOCKS - 1; i >= 0; i--) free(blocks[i]);
}

/* Round r (0, 1) of allocations on the worker thread, counting its faults. */
static void *allocate_round(void *arg) {
  long r = (long)arg;
  long before = thread_faults();
  fill();
  faults[r] = thread_faults() - before;
  return NULL;
}

/* Allocates on a thread, frees here, allocates again: faults[0], faults[1]. */
static void churn(void) {
  for (long r = 0; r < 2; r++) {
    pthread_t t;
    if (pthread_create(&t, NULL, allocate_round, (void *)r) != 0) exit(2);
    pthread_join(t, NULL);
    if (r == 0) drain();
  }
  drain();
}

static long resident_kb(void) {
  long pages = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f || fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = -1;
  if (f) fclose(f);
  return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* glibc's defaults, in a child: the second round faults about as much as the first. */
static void untuned_refaults(void) {
  pid_t pid = fork();
  if (pid == 0) {
    churn();
    _exit(faults[1] * 2 > faults[0] ? 0 : 1);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void tuned_reuses(void) {
  churn();
  printf("faults of the worker thread: %ld, then %ld\n", faults[0], faults[1]);
  CHECK(faults[0] > NBLOCKS / 2); /* 16 MB is ~3,900 pages */
  CHECK(faults[1] * 10 < faults[0]);
}

static void big_blocks_from_heap(void) {
  struct mallinfo2 before = mallinfo2();
  void *p = malloc(8 << 20);
  CHECK(p != NULL);
  struct mallinfo2 after = mallinfo2();
  CHECK(after.hblks == before.hblks); /* no mmap of its own */
  free(p);
}

static void small_gives_back(void) {
  fill();
  long full = resident_kb();
  drain();
  long kept = resident_kb();
  CHECK(ls_mem_policy(0) == 0);
  long released = resident_kb();
  printf("resident: %ld kB full, %ld kB freed (fast), %ld kB after the switch\n", full, kept, released);
  CHECK(kept > full - 4096);          /* the fast policy kept the memory */
  CHECK(released < kept - 12 * 1024); /* the switch gave most of 16 MB back */
  CHECK(ls_mem_policy(0) == 0);       /* the same mode again: nothing to do */
}

/* GLIBC_TUNABLES with a malloc tunable: ls_mem_policy leaves glibc alone. */
static void user_tunables_win(void) {
  pid_t pid = fork();
  if (pid == 0) {
    setenv("GLIBC_TUNABLES", "glibc.malloc.check=0", 1);
    ls_mem_policy(1);
    struct mallinfo2 before = mallinfo2();
    void *p = malloc(1 << 20); /* over the default 128 KiB: its own mmap */
    struct mallinfo2 after = mallinfo2();
    _exit(p && after.hblks == before.hblks + 1 ? 0 : 1);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void) {
  untuned_refaults();
  user_tunables_win();
  CHECK(ls_mem_policy(1) == 1);
  tuned_reuses();
  big_blocks_from_heap();
  small_gives_back();
  CHECK_DONE();
}
#endif
