/* devbroker.c - the dev broker (see devbroker.h).
 *
 * librdkafka's mock cluster lives inside an rd_kafka_t handle; we create a bare
 * producer handle to own it. Topics are auto-created with 4 partitions on first
 * use; `--topic NAME:PARTS` creates them up front with another count.
 * `luastream broker` with a pipe on stdin reads fault-injection commands from
 * it (ls_devbroker_command): the next requests of one Kafka API fail with a
 * chosen error, or every broker goes down, comes up, or answers late (an
 * uplink outage or a slow link), testing aids for the runtime's error and
 * fault paths. It serves the
 * same commands, and `create TOPIC PARTITIONS`, on a Unix domain socket named
 * after its port (the side channel): the mock cluster takes no CreateTopics,
 * so that is where the runtime creates changelogs with the partition count
 * they need (ls_devbroker_create_at). One thread polls stdin, the listening
 * socket and its clients; the mock cluster runs in threads of its own. */
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
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "log.h"

struct ls_devbroker {
  rd_kafka_t *rk;
  rd_kafka_mock_cluster_t *mc;
  rd_kafka_t *meta;  /* a client of the cluster, for partition counts (made on first use) */
  ls_devbroker *next; /* in this process's list of brokers */
};

/* The dev brokers running in this process, so that a client in the same
 * process (luastream run with no broker) creates topics directly rather than
 * through a side channel. Touched from the main thread only. */
static ls_devbroker *in_process;

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
  b->next = in_process;
  in_process = b;
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
  for (ls_devbroker **p = &in_process; *p; p = &(*p)->next)
    if (*p == b) {
      *p = b->next;
      break;
    }
  if (b->meta) rd_kafka_destroy(b->meta);
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

/* ---- the uplink: every broker down, up, added latency ----------------------
 * librdkafka's mock brokers: set_down closes every connection and refuses new
 * ones (clients see their connections fail, as when a gateway's uplink goes),
 * set_up accepts them again, set_rtt delays every response by that many
 * milliseconds. -1 is every broker of the cluster. The side channel is a
 * Unix socket of its own, so it keeps answering while the brokers are down. */

/* down | up */
static int cmd_updown(ls_devbroker *b, char **w, int nw, char *reply, size_t len) {
  int down = strcmp(w[0], "down") == 0;
  if (nw != 1) return snprintf(reply, len, "error: usage: %s", w[0]), -1;
  rd_kafka_resp_err_t e = down ? rd_kafka_mock_broker_set_down(b->mc, -1)
                               : rd_kafka_mock_broker_set_up(b->mc, -1);
  if (e) return snprintf(reply, len, "error: %s: %s", w[0], rd_kafka_err2str(e)), -1;
  snprintf(reply, len, down ? "ok down: every broker refuses connections" : "ok up: every broker accepts connections");
  return 0;
}

/* rtt MS */
static int cmd_rtt(ls_devbroker *b, char **w, int nw, char *reply, size_t len) {
  int ms;
  if (nw != 2) return snprintf(reply, len, "error: usage: rtt MS"), -1;
  if (parse_int(w[1], 0, 600000, &ms)) return snprintf(reply, len, "error: bad rtt %s (0 to 600000 ms)", w[1]), -1;
  rd_kafka_resp_err_t e = rd_kafka_mock_broker_set_rtt(b->mc, -1, ms);
  if (e) return snprintf(reply, len, "error: rtt: %s", rd_kafka_err2str(e)), -1;
  snprintf(reply, len, "ok rtt %d ms", ms);
  return 0;
}

/* ---- topic creation --------------------------------------------------------- */

/* Partition count of an existing topic as the cluster reports it, -1 when it
 * does not exist or the cluster does not answer. Asks through a client of its
 * own, made on first use, for all topics (asking for one by name would
 * auto-create it). */
static int partition_count(ls_devbroker *b, const char *topic) {
  if (!b->meta) {
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err) ||
        rd_kafka_conf_set(conf, "bootstrap.servers", ls_devbroker_bootstraps(b), err, sizeof err)) {
      rd_kafka_conf_destroy(conf);
      return -1;
    }
    if (!(b->meta = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err))) {
      rd_kafka_conf_destroy(conf);
      return -1;
    }
  }
  const struct rd_kafka_metadata *md = NULL;
  int n = -1;
  if (rd_kafka_metadata(b->meta, 1, NULL, &md, 2000) != RD_KAFKA_RESP_ERR_NO_ERROR) return -1;
  for (int i = 0; i < md->topic_cnt; i++)
    if (strcmp(md->topics[i].topic, topic) == 0 && !md->topics[i].err) n = md->topics[i].partition_cnt;
  rd_kafka_metadata_destroy(md);
  return n;
}

/* A legal Kafka topic name: 1 to 249 of [A-Za-z0-9._-]. */
static int topic_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > 249) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '.' || *s == '_' || *s == '-'))
      return 0;
  return 1;
}

/* Creates topic with partitions, or accepts an existing one with that many.
 * Replies "ok created T N", "ok exists T N" or "error: ...". */
static ls_devbroker_rc create(ls_devbroker *b, const char *topic, int partitions, char *reply,
                              size_t len) {
  if (!topic_name_ok(topic))
    return snprintf(reply, len, "error: bad topic name %s", topic), LS_DEVBROKER_REFUSED;
  rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(b->mc, topic, partitions, 1);
  if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
    return snprintf(reply, len, "ok created %s %d", topic, partitions), LS_DEVBROKER_OK;
  if (e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
    return snprintf(reply, len, "error: cannot create %s: %s", topic, rd_kafka_err2str(e)),
           LS_DEVBROKER_REFUSED;
  int have = partition_count(b, topic);
  if (have == partitions)
    return snprintf(reply, len, "ok exists %s %d", topic, partitions), LS_DEVBROKER_OK;
  if (have < 0)
    return snprintf(reply, len, "error: topic %s exists, but its partition count is unknown", topic),
           LS_DEVBROKER_REFUSED;
  snprintf(reply, len, "error: topic %s exists with %d partitions, not %d", topic, have, partitions);
  return LS_DEVBROKER_REFUSED;
}

/* create TOPIC PARTITIONS */
static int cmd_create(ls_devbroker *b, char **w, int nw, char *reply, size_t len) {
  int parts;
  if (nw != 3) return snprintf(reply, len, "error: usage: create TOPIC PARTITIONS"), -1;
  if (parse_int(w[2], 1, 10000, &parts))
    return snprintf(reply, len, "error: bad partition count %s", w[2]), -1;
  return create(b, w[1], parts, reply, len) == LS_DEVBROKER_OK ? 0 : -1;
}

int ls_devbroker_command(ls_devbroker *b, char *line, char *reply, size_t len) {
  char *w[8];
  int nw = 0;
  for (char *t = strtok(line, " \t\r\n"); t && nw < 8; t = strtok(NULL, " \t\r\n")) w[nw++] = t;
  reply[0] = 0;
  if (nw == 0 || w[0][0] == '#') return 0;
  if (strcmp(w[0], "fail") == 0) return cmd_fail(b, w, nw, reply, len);
  if (strcmp(w[0], "clear") == 0) return cmd_clear(b, w, nw, reply, len);
  if (strcmp(w[0], "create") == 0) return cmd_create(b, w, nw, reply, len);
  if (strcmp(w[0], "down") == 0 || strcmp(w[0], "up") == 0) return cmd_updown(b, w, nw, reply, len);
  if (strcmp(w[0], "rtt") == 0) return cmd_rtt(b, w, nw, reply, len);
  snprintf(reply, len,
           "error: unknown command %s (fail API ERROR [COUNT] | clear API | create TOPIC PARTITIONS | "
           "down | up | rtt MS)",
           w[0]);
  return -1;
}

/* ---- the side channel -------------------------------------------------------
 * The mock cluster takes no CreateTopics, so `luastream broker` also listens on
 * a Unix domain socket named after its port, serving the same command lines as
 * its stdin pipe (create among them): a runtime whose broker is on loopback
 * creates its internal topics there. */

int ls_devbroker_socket_path(int port, int fallback, char *out, size_t len) {
  const char *xdg = fallback ? NULL : getenv("XDG_RUNTIME_DIR");
  struct sockaddr_un sun;
  int n = xdg && xdg[0] == '/' ? snprintf(out, len, "%s/luastream-broker-%d.sock", xdg, port)
          : snprintf(out, len, "/tmp/luastream-broker-%u-%d.sock", (unsigned)getuid(), port);
  if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof sun.sun_path) {
    if (!fallback && xdg && xdg[0] == '/') return ls_devbroker_socket_path(port, 1, out, len);
    return -1;
  }
  return 0;
}

/* The port of the first listener in a "host:port,..." list, or -1. */
static int first_port(const char *bootstraps) {
  const char *comma = strchr(bootstraps, ',');
  const char *colon = NULL;
  for (const char *p = bootstraps; *p && (!comma || p < comma); p++)
    if (*p == ':') colon = p;
  return colon ? atoi(colon + 1) : -1;
}

/* The port of one bootstrap entry ("[proto://]host:port") when its host is
 * loopback, else -1. */
static int loopback_port(const char *entry, size_t n) {
  char e[512];
  if (n >= sizeof e) return -1;
  memcpy(e, entry, n);
  e[n] = 0;
  char *host = strstr(e, "://") ? strstr(e, "://") + 3 : e;
  char *colon = strrchr(host, ':');
  if (!colon || colon == host) return -1;
  *colon = 0;
  int port;
  if (parse_int(colon + 1, 1, 65535, &port)) return -1;
  if (strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
      strcmp(host, "[::1]") == 0)
    return port;
  return -1;
}

/* ls_devbroker_socket_path's paths fit; a longer one is cut (and not found). */
static void set_sun_path(struct sockaddr_un *sun, const char *path) {
  size_t n = strlen(path);
  if (n >= sizeof sun->sun_path) n = sizeof sun->sun_path - 1;
  sun->sun_family = AF_UNIX;
  memcpy(sun->sun_path, path, n);
  sun->sun_path[n] = 0;
}

/* Sends line to the side channel at path and reads one reply line, waiting at
 * most timeout_ms. */
static ls_devbroker_rc ask(const char *path, const char *line, int timeout_ms, char *reply,
                           size_t len) {
  struct stat st;
  struct sockaddr_un sun = {0};
  /* Only a socket of this user's: another one's is not our broker's. */
  if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_uid != getuid())
    return snprintf(reply, len, "no dev broker side channel at %s", path), LS_DEVBROKER_NO_CHANNEL;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return snprintf(reply, len, "socket: %s", strerror(errno)), LS_DEVBROKER_FAILED;
  sun.sun_family = AF_UNIX;
  set_sun_path(&sun, path);
  if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) { /* a stale socket: no broker */
    snprintf(reply, len, "no dev broker side channel at %s (%s)", path, strerror(errno));
    close(fd);
    return LS_DEVBROKER_NO_CHANNEL;
  }
  size_t sent = 0, want = strlen(line), got = 0;
  while (sent < want) {
    ssize_t w = send(fd, line + sent, want - sent, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      snprintf(reply, len, "writing to %s: %s", path, strerror(errno));
      close(fd);
      return LS_DEVBROKER_FAILED;
    }
    sent += (size_t)w;
  }
  char buf[1024];
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    long left = timeout_ms - ((t.tv_sec - t0.tv_sec) * 1000L + (t.tv_nsec - t0.tv_nsec) / 1000000L);
    struct pollfd p = {fd, POLLIN, 0};
    int r = left > 0 ? poll(&p, 1, (int)left) : 0;
    if (r < 0 && errno == EINTR) continue;
    ssize_t n = r > 0 ? read(fd, buf + got, sizeof buf - 1 - got) : -1;
    if (n < 0 && r > 0 && errno == EINTR) continue;
    if (n <= 0) {
      snprintf(reply, len, "%s: %s", path, r == 0 ? "no answer in time" : n == 0 ? "closed without an answer" : strerror(errno));
      close(fd);
      return LS_DEVBROKER_FAILED;
    }
    got += (size_t)n;
    buf[got] = 0;
    char *nl = strchr(buf, '\n');
    if (nl || got == sizeof buf - 1) {
      if (nl) *nl = 0;
      break;
    }
  }
  close(fd);
  snprintf(reply, len, "%s", buf);
  if (strncmp(buf, "ok ", 3) == 0) return LS_DEVBROKER_OK;
  if (strncmp(buf, "error:", 6) == 0) return LS_DEVBROKER_REFUSED;
  return LS_DEVBROKER_FAILED;
}

ls_devbroker_rc ls_devbroker_create_at(const char *bootstraps, const char *topic, int partitions,
                                       int timeout_ms, char *reply, size_t len) {
  char line[600];
  if (snprintf(line, sizeof line, "create %s %d\n", topic, partitions) >= (int)sizeof line ||
      strpbrk(topic, " \t\r\n"))
    return snprintf(reply, len, "error: bad topic name %s", topic), LS_DEVBROKER_REFUSED;
  snprintf(reply, len, "no loopback address in %s", bootstraps);
  for (const char *e = bootstraps; e && *e;) {
    const char *comma = strchr(e, ',');
    size_t n = comma ? (size_t)(comma - e) : strlen(e);
    int port = loopback_port(e, n);
    e = comma ? comma + 1 : NULL;
    if (port < 0) continue;
    for (ls_devbroker *b = in_process; b; b = b->next) /* in this process: directly */
      if (lists_port(ls_devbroker_bootstraps(b), port)) return create(b, topic, partitions, reply, len);
    for (int fallback = 0; fallback < 2; fallback++) {
      char path[256];
      if (ls_devbroker_socket_path(port, fallback, path, sizeof path)) continue;
      ls_devbroker_rc rc = ask(path, line, timeout_ms, reply, len);
      if (rc != LS_DEVBROKER_NO_CHANNEL) return rc;
    }
  }
  return LS_DEVBROKER_NO_CHANNEL;
}

/* Listens on the side channel of the broker at bootstraps; the socket, or -1
 * (with a warning). path gets its path. */
static int listen_side_channel(const char *bootstraps, char *path, size_t len) {
  struct sockaddr_un sun = {0};
  struct stat st;
  path[0] = 0;
  int port = first_port(bootstraps);
  if (port < 0 || ls_devbroker_socket_path(port, 0, path, len)) {
    ls_warn("dev broker: no side channel (no socket path for %s)", bootstraps);
    return path[0] = 0, -1;
  }
  /* A socket left by a broker that was killed on this port: nobody serves it. */
  if (lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode) || st.st_uid != getuid()) {
      ls_warn("dev broker: no side channel: %s exists and is not a socket of this user's", path);
      return path[0] = 0, -1;
    }
    unlink(path);
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sun.sun_family = AF_UNIX;
  set_sun_path(&sun, path);
  mode_t old = umask(077); /* 0600 from the start: only this user may connect */
  int ok = fd >= 0 && bind(fd, (struct sockaddr *)&sun, sizeof sun) == 0;
  umask(old);
  if (!ok || chmod(path, 0600) != 0 || listen(fd, 16) != 0) {
    ls_warn("dev broker: no side channel at %s: %s", path, strerror(errno));
    if (ok) unlink(path);
    if (fd >= 0) close(fd);
    return path[0] = 0, -1;
  }
  return fd;
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

/* Runs the complete lines of buf[0..*n), answering each on out (a client of
 * the side channel), or on stdout when out is -1; keeps a partial last line
 * at the start of buf. */
static void run_lines(ls_devbroker *b, char *buf, size_t *n, int out) {
  char *start = buf, *nl;
  const char *via = out < 0 ? "fault injection" : "side channel";
  while ((nl = memchr(start, '\n', (size_t)(buf + *n - start)))) {
    char reply[512];
    *nl = 0;
    if (ls_devbroker_command(b, start, reply, sizeof reply)) ls_warn("%s: %s", via, reply);
    else if (reply[0]) ls_info("%s: %s", via, reply);
    if (reply[0] && out < 0) {
      printf("%s\n", reply);
      fflush(stdout);
    } else if (reply[0]) { /* a short line to a local socket; a client that does not read loses it */
      size_t rl = strlen(reply);
      reply[rl] = '\n';
      if (send(out, reply, rl + 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        ls_debug("side channel: cannot answer: %s", strerror(errno));
    }
    start = nl + 1;
  }
  *n -= (size_t)(start - buf);
  memmove(buf, start, *n);
}

#define MAX_CLIENTS 32

typedef struct client {
  int fd; /* -1: a free slot */
  size_t n;
  char buf[1024];
} client;

/* Reads what fd has into buf (n bytes held, cap in all) and runs its complete
 * lines. 0; -1 when the peer closed it (a last line without a newline is
 * still run); 1 when it sent a line too long for buf (not run). */
static int read_lines(ls_devbroker *b, int fd, char *buf, size_t *n, size_t cap, int out) {
  ssize_t r = read(fd, buf + *n, cap - 1 - *n);
  if (r < 0 && (errno == EINTR || errno == EAGAIN)) return 0;
  if (r <= 0) {
    if (*n) {
      buf[(*n)++] = '\n';
      run_lines(b, buf, n, out);
    }
    return -1;
  }
  *n += (size_t)r;
  run_lines(b, buf, n, out);
  return *n == cap - 1 ? 1 : 0;
}

/* Waits for SIGINT/SIGTERM, serving commands from stdin while it is an open
 * pipe and from the side channel's clients (listener lfd, or -1). */
static void serve(ls_devbroker *b, int lfd) {
  static client clients[MAX_CLIENTS];
  char buf[4096];
  size_t n = 0;
  int fd = stdin_is_pipe() ? STDIN_FILENO : -1;
  for (int i = 0; i < MAX_CLIENTS; i++) clients[i].fd = -1;
  while (!broker_stop) {
    struct pollfd p[2 + MAX_CLIENTS];
    int np = 0, who[2 + MAX_CLIENTS]; /* -2 stdin, -1 the listener, else a client */
    if (fd >= 0) p[np] = (struct pollfd){fd, POLLIN, 0}, who[np++] = -2;
    if (lfd >= 0) p[np] = (struct pollfd){lfd, POLLIN, 0}, who[np++] = -1;
    for (int i = 0; i < MAX_CLIENTS; i++)
      if (clients[i].fd >= 0) p[np] = (struct pollfd){clients[i].fd, POLLIN, 0}, who[np++] = i;
    if (np == 0) {
      pause();
      continue;
    }
    if (poll(p, (nfds_t)np, 1000) <= 0) continue;
    for (int k = 0; k < np; k++) {
      if (!p[k].revents) continue;
      if (who[k] == -2) {
        /* the writer closed it: a last line without newline, then no more */
        int r = read_lines(b, fd, buf, &n, sizeof buf, -1);
        if (r) n = 0;    /* a line too long for the buffer is dropped */
        if (r < 0) fd = -1;
      } else if (who[k] == -1) {
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), slot = -1;
        for (int i = 0; c >= 0 && i < MAX_CLIENTS && slot < 0; i++)
          if (clients[i].fd < 0) slot = i;
        if (slot >= 0) clients[slot].fd = c, clients[slot].n = 0;
        else if (c >= 0) close(c); /* too many at once: it sees the connection closed */
      } else {
        client *cl = &clients[who[k]];
        if (read_lines(b, cl->fd, cl->buf, &cl->n, sizeof cl->buf, cl->fd)) {
          close(cl->fd);
          cl->fd = -1;
        }
      }
    }
  }
  for (int i = 0; i < MAX_CLIENTS; i++)
    if (clients[i].fd >= 0) close(clients[i].fd);
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
      "It also listens on a Unix domain socket, its side channel, at\n"
      "$XDG_RUNTIME_DIR/luastream-broker-PORT.sock (without XDG_RUNTIME_DIR:\n"
      "/tmp/luastream-broker-UID-PORT.sock), where luastream run creates its internal\n"
      "topics (changelogs) with the partition counts they need.\n"
      "\n"
      "options:\n"
      "  --partitions N      partitions for --topic without a count (default 4)\n"
      "  --topic NAME[:P]    create a topic up front (repeatable)\n"
      "  --bootstrap-file F  also write the bootstrap address to F\n"
      "  --brokers N         brokers in the cluster (default 1, at most 16)\n"
      "\n"
      "With a pipe on stdin, and on the side channel, it takes command lines\n"
      "(docs/dev-broker.md):\n"
      "  fail API ERROR [COUNT]   the next COUNT requests of API fail with ERROR\n"
      "  clear API                forget the failures queued for API\n"
      "  create TOPIC PARTITIONS  create a topic (ok if it exists with that count)\n"
      "  down                     every broker drops its connections and refuses new ones\n"
      "  up                       every broker accepts connections again\n"
      "  rtt MS                   every broker answers MS milliseconds late (0: no delay)\n";
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
  char sock_path[256];
  int lfd = listen_side_channel(addr, sock_path, sizeof sock_path);
  if (bootstrap_file && write_file_atomic(bootstrap_file, addr)) {
    fprintf(stderr, "luastream broker: cannot write %s: %s\n", bootstrap_file, strerror(errno));
    if (lfd >= 0) close(lfd), unlink(sock_path);
    ls_devbroker_stop(b);
    return 1;
  }
  printf("%s\n", addr);
  fflush(stdout);
  ls_info("dev broker listening on %s (in memory; topics are auto-created with 4 partitions)", addr);
  if (lfd >= 0) ls_info("dev broker side channel on %s", sock_path);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN); /* a reader of the replies may go away */
  serve(b, lfd);
  ls_info("dev broker stopping");
  if (lfd >= 0) close(lfd), unlink(sock_path);
  ls_devbroker_stop(b);
  return 0;
}
