/* reaper.c - destroys consumed Kafka messages on a thread of its own (see
 * reaper.h for why).
 *
 * A ring of message pointers under one mutex: ls_reaper_put copies a batch in
 * and wakes the thread if it sleeps; the thread takes up to SLICE at a time,
 * destroys them outside the lock, and tells ls_reaper_drain when all are gone. */
#include "reaper.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#define SLICE 1024

struct ls_reaper {
  pthread_mutex_t mu;
  pthread_cond_t work;    /* the ring got messages, or stop */
  pthread_cond_t drained; /* nothing in the ring nor being destroyed */
  pthread_t thread;
  rd_kafka_message_t *ring[LS_REAPER_CAP];
  int head, count; /* the oldest message, how many in the ring */
  int busy;        /* messages taken out and not destroyed yet */
  int sleeping, stop;
};

void ls_background_thread(void) {
  struct sched_param sp = {0};
  pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp); /* a hint: failing changes nothing else */
}

static int take(ls_reaper *r, rd_kafka_message_t **out) {
  int k = r->count < SLICE ? r->count : SLICE;
  for (int i = 0; i < k; i++) out[i] = r->ring[(r->head + i) % LS_REAPER_CAP];
  r->head = (r->head + k) % LS_REAPER_CAP;
  r->count -= k;
  r->busy = k;
  return k;
}

static void *reap(void *arg) {
  ls_reaper *r = arg;
  ls_background_thread();
  rd_kafka_message_t *slice[SLICE];
  pthread_mutex_lock(&r->mu);
  for (;;) {
    while (r->count == 0 && !r->stop) {
      r->sleeping = 1;
      pthread_cond_wait(&r->work, &r->mu);
      r->sleeping = 0;
    }
    if (r->count == 0) break; /* stop, and nothing left */
    int k = take(r, slice);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < k; i++) rd_kafka_message_destroy(slice[i]);
    pthread_mutex_lock(&r->mu);
    r->busy = 0;
    if (r->count == 0) pthread_cond_broadcast(&r->drained);
  }
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

ls_reaper *ls_reaper_new(void) {
  ls_reaper *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->work, NULL);
  pthread_cond_init(&r->drained, NULL);
  if (pthread_create(&r->thread, NULL, reap, r) != 0) {
    pthread_cond_destroy(&r->drained);
    pthread_cond_destroy(&r->work);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return NULL;
  }
  pthread_setname_np(r->thread, "ls:reaper");
  return r;
}

void ls_reaper_put(ls_reaper *r, rd_kafka_message_t **msgs, int n) {
  int k = 0;
  if (r) {
    pthread_mutex_lock(&r->mu);
    k = LS_REAPER_CAP - r->count;
    if (k > n) k = n;
    for (int i = 0; i < k; i++) r->ring[(r->head + r->count + i) % LS_REAPER_CAP] = msgs[i];
    r->count += k;
    if (k > 0 && r->sleeping) pthread_cond_signal(&r->work);
    pthread_mutex_unlock(&r->mu);
  }
  for (int i = k; i < n; i++) rd_kafka_message_destroy(msgs[i]); /* the reaper is that far behind */
}

void ls_reaper_drain(ls_reaper *r) {
  if (!r) return;
  pthread_mutex_lock(&r->mu);
  while (r->count > 0 || r->busy > 0) pthread_cond_wait(&r->drained, &r->mu);
  pthread_mutex_unlock(&r->mu);
}

int ls_reaper_pending(ls_reaper *r) {
  if (!r) return 0;
  pthread_mutex_lock(&r->mu);
  int n = r->count + r->busy;
  pthread_mutex_unlock(&r->mu);
  return n;
}

void ls_reaper_free(ls_reaper *r) {
  if (!r) return;
  pthread_mutex_lock(&r->mu);
  r->stop = 1;
  pthread_cond_signal(&r->work);
  pthread_mutex_unlock(&r->mu);
  pthread_join(r->thread, NULL); /* it destroys what is left first */
  pthread_cond_destroy(&r->drained);
  pthread_cond_destroy(&r->work);
  pthread_mutex_destroy(&r->mu);
  free(r);
}
