/* devbroker.c - the dev broker (see devbroker.h).
 *
 * librdkafka's mock cluster lives inside an rd_kafka_t handle; we create a bare
 * producer handle to own it. Topics are auto-created with 4 partitions on first
 * use; `--topic NAME:PARTS` creates them up front with another count.
 * `luastream broker` with a pipe on stdin reads fault-injection commands from
 * it (ls_devbroker_command): the next requests of one Kafka API fail with a
 * chosen error, a testing aid for the runtime's error paths. */
#include "devbroker.h"

#include <dirent.h>
#include <errno.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "log.h"

struct ls_devbroker {
  rd_kafka_t *rk;
  rd_kafka_mock_cluster_t *mc;
};

/* ---- Nagle's algorithm ----------------------------------------------------
 * The mock cluster accepts its connections with Nagle's algorithm on. A
 * client that sends requests for several partitions gets several responses
 * back to back, and each one after the first then waits for the client's
 * delayed ACK: about 40 ms per produce or commit round trip, which made every
 * flush (and so every checkpoint) take 40 ms or more. On Linux an accepted
 * socket inherits TCP_NODELAY from its listening socket, so setting it on the
 * cluster's listening sockets (found by their ports among this process's file
 * descriptors, right after the cluster opened them) gives every broker
 * connection TCP_NODELAY, as a real Kafka broker's have, and touches no other
 * socket of the process. */

/* Is ports (a "host:port,host:port" list) naming port? */
static int lists_port(const char *bootstraps, int port) {
  for (const char *p = bootstraps; (p = strchr(p, ':')); p++)
    if (atoi(p + 1) == port) return 1;
  return 0;
}

static int no_delay_on_listeners(const char *bootstraps) {
  DIR *dir = opendir("/proc/self/fd");
  int set = 0;
  if (!dir) return 0;
  for (struct dirent *de; (de = readdir(dir));) {
    int fd = atoi(de->d_name), listening = 0, one = 1;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss, ol = sizeof listening;
    if (fd <= 2 || getsockname(fd, (struct sockaddr *)&ss, &len) != 0) continue;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ol) != 0 || !listening) continue;
    int port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
               : ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) : -1;
    if (port > 0 && lists_port(bootstraps, port) &&
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0)
      set++;
  }
  closedir(dir);
  return set;
}

ls_devbroker *ls_devbroker_start(int brokers, char *err, size_t errlen) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* The handle only hosts the cluster; keep its own logging quiet. */
  rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
  if (!rk) return NULL;
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
  if (!mc) {
    snprintf(err, errlen, "cannot start the mock cluster");
    rd_kafka_destroy(rk);
    return NULL;
  }
  ls_devbroker *b = calloc(1, sizeof *b);
  if (!b) {
    snprintf(err, errlen, "out of memory");
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return NULL;
  }
  b->rk = rk;
  b->mc = mc;
  if (no_delay_on_listeners(rd_kafka_mock_cluster_bootstraps(mc)) < brokers)
    ls_warn("dev broker: could not set TCP_NODELAY on its listening sockets; its answers may "
            "wait ~40 ms for delayed ACKs");
  return b;
}

const char *ls_devbroker_bootstraps(const ls_devbroker *b) {
  return rd_kafka_mock_cluster_bootstraps(b->mc);
}

int ls_devbroker_create_topic(ls_devbroker *b, const char *topic, int partitions, char *err,
                              size_t errlen) {
  rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(b->mc, topic, partitions, 1);
  if (e) {
    snprintf(err, errlen, "cannot create topic %s: %s", topic, rd_kafka_err2str(e));
    return -1;
  }
  return 0;
}

void ls_devbroker_stop(ls_devbroker *b) {
  if (!b) return;
  rd_kafka_mock_cluster_destroy(b->mc);
  rd_kafka_destroy(b->rk);
  free(b);
}

/* ---- fault injection ------------------------------------------------------ */

static int parse_int(const char *s, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return -1;
  *out = (int)v;
  return 0;
}

/* Kafka protocol request names, indexed by ApiKey. */
static const char *const API_NAMES[] = {
    "Produce", "Fetch", "ListOffsets", "Metadata", "LeaderAndIsr", "StopReplica",
    "UpdateMetadata", "ControlledShutdown", "OffsetCommit", "OffsetFetch", "FindCoordinator",
    "JoinGroup", "Heartbeat", "LeaveGroup", "SyncGroup", "DescribeGroups", "ListGroups",
    "SaslHandshake", "ApiVersions", "CreateTopics", "DeleteTopics", "DeleteRecords",
    "InitProducerId", "OffsetForLeaderEpoch", "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn",
    "WriteTxnMarkers", "TxnOffsetCommit", "DescribeAcls", "CreateAcls", "DeleteAcls",
    "DescribeConfigs", "AlterConfigs", "AlterReplicaLogDirs", "DescribeLogDirs",
    "SaslAuthenticate", "CreatePartitions", "CreateDelegationToken", "RenewDelegationToken",
    "ExpireDelegationToken", "DescribeDelegationToken", "DeleteGroups", "ElectLeaders",
    "IncrementalAlterConfigs", "AlterPartitionReassignments", "ListPartitionReassignments",
    "OffsetDelete"};
#define NAPIS ((int)(sizeof API_NAMES / sizeof API_NAMES[0]))

/* An ApiKey from its name (any case) or number; -1 if unknown. */
static int api_key(const char *s) {
  int n;
  if (parse_int(s, 0, 32767, &n) == 0) return n;
  for (int i = 0; i < NAPIS; i++)
    if (strcasecmp(s, API_NAMES[i]) == 0) return i;
  return -1;
}

/* An error code from its name ("PRODUCER_FENCED", "RD_KAFKA_RESP_ERR_..."
 * and "_TRANSPORT" alike, any case) or number. 0, or -1 if unknown. */
static int err_code(const char *s, rd_kafka_resp_err_t *out) {
  int n;
  if (parse_int(s, -1000, 32767, &n) == 0) return *out = (rd_kafka_resp_err_t)n, 0;
  if (strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18) == 0) s += 18;
  const struct rd_kafka_err_desc *d;
  size_t cnt;
  rd_kafka_get_err_descs(&d, &cnt);
  for (size_t i = 0; i < cnt; i++)
    if (d[i].name && d[i].code && strcasecmp(s, d[i].name) == 0) return *out = d[i].code, 0;
  return -1;
}

static const char *api_name(int key) { return key < NAPIS ? API_NAMES[key] : "?"; }

/* fail API ERROR [COUNT] */
static int cmd_fail(ls_devbroker *b, char **w, int nw, char *reply, size_t len) {
  int key = nw > 1 ? api_key(w[1]) : -1, count = 1;
  rd_kafka_resp_err_t e;
  if (nw < 3 || nw > 4) return snprintf(reply, len, "error: usage: fail API ERROR [COUNT]"), -1;
  if (key < 0) return snprintf(reply, len, "error: unknown API %s", w[1]), -1;
  if (err_code(w[2], &e)) return snprintf(reply, len, "error: unknown error %s", w[2]), -1;
  if (nw == 4 && parse_int(w[3], 1, 100000, &count))
    return snprintf(reply, len, "error: bad count %s", w[3]), -1;
  rd_kafka_resp_err_t *errs = malloc((size_t)count * sizeof *errs);
  if (!errs) return snprintf(reply, len, "error: out of memory"), -1;
  for (int i = 0; i < count; i++) errs[i] = e;
  rd_kafka_mock_push_request_errors_array(b->mc, (int16_t)key, (size_t)count, errs);
  free(errs);
  snprintf(reply, len, "ok fail %s(%d) %s x%d", api_name(key), key, rd_kafka_err2name(e), count);
  return 0;
}

/* clear API */
static int cmd_clear(ls_devbroker *b, char **w, int nw, char *reply, size_t len) {
  int key = nw == 2 ? api_key(w[1]) : -1;
  if (nw != 2) return snprintf(reply, len, "error: usage: clear API"), -1;
  if (key < 0) return snprintf(reply, len, "error: unknown API %s", w[1]), -1;
  rd_kafka_mock_clear_request_errors(b->mc, (int16_t)key);
  snprintf(reply, len, "ok clear %s(%d)", api_name(key), key);
  return 0;
}

int ls_devbroker_command(ls_devbroker *b, char *line, char *reply, size_t len) {
  char *w[8];
  int nw = 0;
  for (char *t = strtok(line, " \t\r\n"); t && nw < 8; t = strtok(NULL, " \t\r\n")) w[nw++] = t;
  reply[0] = 0;
  if (nw == 0 || w[0][0] == '#') return 0;
  if (strcmp(w[0], "fail") == 0) return cmd_fail(b, w, nw, reply, len);
  if (strcmp(w[0], "clear") == 0) return cmd_clear(b, w, nw, reply, len);
  snprintf(reply, len, "error: unknown command %s (fail API ERROR [COUNT] | clear API)", w[0]);
  return -1;
}

/* ---- luastream broker ---------------------------------------------------- */

static volatile sig_atomic_t broker_stop;
static void on_signal(int sig) {
  (void)sig;
  broker_stop = 1;
}

static int write_file_atomic(const char *path, const char *text) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return -1;
  int ok = fprintf(f, "%s\n", text) > 0;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    return -1;
  }
  return 0;
}

/* Is stdin a pipe or a socket, which may carry commands, rather than a
 * terminal, a file or /dev/null? */
static int stdin_is_pipe(void) {
  struct stat st;
  return fstat(STDIN_FILENO, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

/* Runs the complete lines of buf[0..*n), answering each on stdout; keeps a
 * partial last line at the start of buf. */
static void run_lines(ls_devbroker *b, char *buf, size_t *n) {
  char *start = buf, *nl;
  while ((nl = memchr(start, '\n', (size_t)(buf + *n - start)))) {
    char reply[512];
    *nl = 0;
    if (ls_devbroker_command(b, start, reply, sizeof reply)) ls_warn("fault injection: %s", reply);
    else if (reply[0]) ls_info("fault injection: %s", reply);
    if (reply[0]) {
      printf("%s\n", reply);
      fflush(stdout);
    }
    start = nl + 1;
  }
  *n -= (size_t)(start - buf);
  memmove(buf, start, *n);
}

/* Waits for SIGINT/SIGTERM, serving commands from stdin while it is an open
 * pipe; otherwise, or once the pipe is closed, just waits. */
static void serve(ls_devbroker *b) {
  char buf[4096];
  size_t n = 0;
  int fd = stdin_is_pipe() ? STDIN_FILENO : -1;
  while (!broker_stop) {
    if (fd < 0) {
      pause();
      continue;
    }
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) continue;
    ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) { /* the writer closed it: a last line without newline, then no more */
      fd = -1;
      if (n == 0) continue;
      buf[n++] = '\n';
    } else {
      n += (size_t)r;
    }
    run_lines(b, buf, &n);
    if (n == sizeof buf - 1) n = 0; /* a line too long for the buffer: dropped */
  }
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "luastream broker: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nusage: luastream broker [--partitions N] [--topic NAME[:PARTS]]... "
                  "[--bootstrap-file F]\n");
  return 2;
}

int ls_devbroker_main(int argc, char **argv) {
  static const char help[] =
      "usage: luastream broker [--partitions N] [--topic NAME[:PARTS]]... [--bootstrap-file F]\n"
      "\n"
      "Starts the dev broker, an in-memory Kafka cluster on loopback (librdkafka's mock\n"
      "cluster), prints its bootstrap address on stdout and runs until SIGINT or\n"
      "SIGTERM. Topics are auto-created with 4 partitions on first use.\n"
      "\n"
      "options:\n"
      "  --partitions N      partitions for --topic without a count (default 4)\n"
      "  --topic NAME[:P]    create a topic up front (repeatable)\n"
      "  --bootstrap-file F  also write the bootstrap address to F\n"
      "  --brokers N         brokers in the cluster (default 1, at most 16)\n"
      "\n"
      "With a pipe on stdin, it takes fault-injection lines (docs/dev-broker.md):\n"
      "  fail API ERROR [COUNT]   the next COUNT requests of API fail with ERROR\n"
      "  clear API                forget the failures queued for API\n";
  int partitions = 4, brokers = 1;
  const char *bootstrap_file = NULL;
  const char *topics[256];
  int ntopics = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return fputs(help, stdout), 0;
    int valued = strcmp(a, "--partitions") == 0 || strcmp(a, "--brokers") == 0 ||
                 strcmp(a, "--topic") == 0 || strcmp(a, "--bootstrap-file") == 0;
    if (!valued) return usage_error(a[0] == '-' ? "unknown option %s" : "unexpected argument %s", a);
    if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
      return usage_error("option %s needs a value", a);
    const char *v = argv[++i];
    if (strcmp(a, "--partitions") == 0) {
      if (parse_int(v, 1, 10000, &partitions)) return usage_error("bad partition count %s", v);
    } else if (strcmp(a, "--brokers") == 0) {
      if (parse_int(v, 1, 16, &brokers)) return usage_error("bad broker count %s", v);
    } else if (strcmp(a, "--topic") == 0) {
      if (ntopics == 256) return usage_error("too many --topic options%s", "");
      topics[ntopics++] = v;
    } else {
      bootstrap_file = v;
    }
  }
  char err[1536];
  ls_devbroker *b = ls_devbroker_start(brokers, err, sizeof err);
  if (!b) {
    fprintf(stderr, "luastream broker: %s\n", err);
    return 1;
  }
  for (int i = 0; i < ntopics; i++) {
    char name[1024];
    snprintf(name, sizeof name, "%s", topics[i]);
    int parts = partitions;
    char *colon = strrchr(name, ':');
    if (colon) {
      *colon = 0;
      if (parse_int(colon + 1, 1, 10000, &parts)) {
        ls_devbroker_stop(b);
        return usage_error("bad --topic NAME:PARTS %s", topics[i]);
      }
    }
    if (!name[0] || ls_devbroker_create_topic(b, name, parts, err, sizeof err)) {
      fprintf(stderr, "luastream broker: %s\n", name[0] ? err : "empty topic name");
      ls_devbroker_stop(b);
      return 2;
    }
  }
  const char *addr = ls_devbroker_bootstraps(b);
  if (bootstrap_file && write_file_atomic(bootstrap_file, addr)) {
    fprintf(stderr, "luastream broker: cannot write %s: %s\n", bootstrap_file, strerror(errno));
    ls_devbroker_stop(b);
    return 1;
  }
  printf("%s\n", addr);
  fflush(stdout);
  ls_info("dev broker listening on %s (in memory; topics are auto-created with 4 partitions)", addr);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN); /* a reader of the replies may go away */
  serve(b);
  ls_info("dev broker stopping");
  ls_devbroker_stop(b);
  return 0;
}
