#!/usr/bin/env bash
# Run a single-node Apache Kafka 4.x broker (KRaft, combined broker+controller)
# from Maven Central jars -- no Docker, no tarball. See `kafka.sh --help`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
POM=$HERE/pom.xml
KAFKA_VERSION=${KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")}
CACHE_DIR=${HEADWATER_CACHE_DIR:-$REPO/.cache}
LIBS=$CACHE_DIR/kafka/$KAFKA_VERSION/libs
JAVA=${JAVA:-${JAVA_HOME:+$JAVA_HOME/bin/java}}
JAVA=${JAVA:-java}

usage() {
  cat <<EOF
Usage: deploy/kafka/kafka.sh COMMAND [OPTIONS]

Single-node Apache Kafka $KAFKA_VERSION broker in KRaft mode (one JVM is both
broker and controller), listening on 127.0.0.1 only, PLAINTEXT, no auto topic
creation. Jars come from Maven Central via deploy/kafka/pom.xml.

Commands:
  fetch     Resolve the jars into \$HEADWATER_CACHE_DIR/kafka/<version>/libs
            (default cache: <repo>/.cache). No-op once done (stamp file).
  start     Fetch if needed, format the storage on first use (random cluster
            id, standalone controller), write <data-dir>/server.properties,
            start the broker. Background by default: pid file in the data dir,
            returns once the port accepts connections (on failure: kills the
            JVM, prints the log tail, exits 1). Exit 0 if already running.
  stop      TERM the background broker, KILL after \$KAFKA_STOP_TIMEOUT s.
  restart   stop + start.
  status    Print state; exit 0 if running, 3 if not.

Options (environment variable in brackets):
  --port N             client port                 [KAFKA_PORT, 9092]
  --controller-port N  KRaft controller port       [KAFKA_CONTROLLER_PORT, port+1]
  --data-dir DIR       state, config, pid, log     [KAFKA_DATA_DIR, <repo>/.data/kafka]
  --log-file FILE      broker log                  [KAFKA_LOG_FILE, <data-dir>/kafka.log]
  --timeout S          seconds to wait for ready   [KAFKA_START_TIMEOUT, 60]
  --foreground         exec java in the foreground (for supervisors); logs go
                       to stdout unless --log-file/KAFKA_LOG_FILE is given
  --override K=V       extra broker property (repeatable), passed to kafka.Kafka
Other environment: KAFKA_HEAP_OPTS (-Xms64m -Xmx512m), KAFKA_JVM_OPTS,
  KAFKA_LOG_LEVEL (root level; WARN + a few INFO loggers, see log4j2.properties),
  KAFKA_LOG4J_CONFIG (deploy/kafka/log4j2.properties),
  KAFKA_STOP_TIMEOUT (30), JAVA / JAVA_HOME.

Kafka's CLI tools are on the same classpath, e.g.
  java -cp "$LIBS/*" org.apache.kafka.tools.TopicCommand \\
       --bootstrap-server 127.0.0.1:9092 --create --topic t --partitions 1
Reset all broker state: stop, then delete the data dir.
EOF
}

die() { echo "kafka.sh: $*" >&2; exit 1; }
log() { echo "kafka.sh: $*" >&2; }

# --- fetch -------------------------------------------------------------------
fetch() {
  local stamp=$LIBS/.fetched want tmp out
  want="$KAFKA_VERSION $(cksum <"$POM")"
  [[ -f $stamp && $(<"$stamp") == "$want" ]] && return 0
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch the Kafka jars)"
  log "fetching Kafka $KAFKA_VERSION jars into $LIBS"
  mkdir -p "$(dirname "$LIBS")"
  tmp=$(mktemp -d "$LIBS.tmp.XXXXXX")
  # mvn -q still prints ANSI resets on 3.8; keep its output for errors only.
  if ! out=$(mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
      -Dkafka.version="$KAFKA_VERSION" -DoutputDirectory="$tmp" 2>&1); then
    echo "$out" >&2; rm -rf "$tmp"; rmdir "$(dirname "$LIBS")" 2>/dev/null || true
    die "mvn dependency:copy-dependencies failed"
  fi
  echo "$want" >"$tmp/.fetched"
  # Swap in the whole set, never half of one (and keep a concurrent winner's).
  if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then rm -rf "$tmp"; else rm -rf "$LIBS" && mv "$tmp" "$LIBS"; fi
}

# --- helpers -----------------------------------------------------------------
port_open() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Pid from the pid file, only if that process is our broker (not a reused pid).
running_pid() {
  local pid
  [[ -f $PID_FILE ]] || return 1
  pid=$(<"$PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
    && ps -o args= -p "$pid" 2>/dev/null | grep -qF "kafka.Kafka $PROPS" \
    && echo "$pid"
}

new_cluster_id() {  # Kafka Uuid: 16 random bytes, URL-safe base64, no padding
  local id
  while id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='); [[ $id == -* ]]; do :; done
  echo "$id"
}

java_opts() {
  # shellcheck disable=SC2206  # word splitting of the *_OPTS strings is intended
  JAVA_OPTS=(${KAFKA_HEAP_OPTS:--Xms64m -Xmx512m}
    ${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}
    "-Dlog4j2.configurationFile=${KAFKA_LOG4J_CONFIG:-$HERE/log4j2.properties}"
    "-Dheadwater.kafka.log.level=${KAFKA_LOG_LEVEL:-WARN}"
    -cp "$LIBS/*")
}

write_props() {
  mkdir -p "$DATA_DIR/data"
  cat >"$PROPS.tmp" <<EOF
# Generated by deploy/kafka/kafka.sh on every start -- edits are overwritten;
# use --override K=V instead.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA_DIR/data

# Single node: every replication factor / ISR is 1.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Small and fast: no rebalance delay, few internal partitions/threads, small
# cleaner buffer (the default allocates 128 MiB of heap at startup).
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.num.partitions=1
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
EOF
  mv "$PROPS.tmp" "$PROPS"
}

format_storage() {
  [[ -f $DATA_DIR/data/meta.properties ]] && return 0
  local id; id=$(new_cluster_id)
  log "formatting KRaft storage in $DATA_DIR/data (cluster id $id)"
  "$JAVA" "${JAVA_OPTS[@]}" kafka.tools.StorageTool format \
    --config "$PROPS" --cluster-id "$id" --standalone \
    || die "kafka.tools.StorageTool format failed"
}

# --- commands ----------------------------------------------------------------
start() {
  local pid
  if pid=$(running_pid); then
    [[ $FOREGROUND == 1 ]] && die "already running in the background (pid $pid)"
    log "already running (pid $pid)"; return 0
  fi
  command -v "$JAVA" >/dev/null || die "java not found (Kafka 4 needs Java 17+)"
  fetch
  for p in "$PORT" "$CPORT"; do port_open "$p" && die "port $p on 127.0.0.1 is already in use"; done
  write_props
  java_opts
  local cmd=("$JAVA" "${JAVA_OPTS[@]}" kafka.Kafka "$PROPS" ${OVERRIDES[@]+"${OVERRIDES[@]}"})

  if [[ $FOREGROUND == 1 ]]; then
    if [[ -n $LOG_FILE_SET ]]; then mkdir -p "$(dirname "$LOG_FILE")"; exec >>"$LOG_FILE" 2>&1; fi
    format_storage
    echo $$ >"$PID_FILE"   # exec keeps the pid, so stop/status work too
    exec "${cmd[@]}"
  fi

  mkdir -p "$(dirname "$LOG_FILE")"
  # Keep one previous log once it grows past 16 MiB.
  if [[ -f $LOG_FILE && $(wc -c <"$LOG_FILE") -gt 16777216 ]]; then mv -f "$LOG_FILE" "$LOG_FILE.1"; fi
  format_storage >>"$LOG_FILE" 2>&1 || { tail -n 30 "$LOG_FILE" >&2; die "format failed (log: $LOG_FILE)"; }
  echo "=== kafka.sh start $(date -u +%FT%TZ) port=$PORT controller=$CPORT" >>"$LOG_FILE"
  nohup "${cmd[@]}" </dev/null >>"$LOG_FILE" 2>&1 &
  pid=$!
  echo "$pid" >"$PID_FILE"

  local deadline=$((SECONDS + TIMEOUT))
  until port_open "$PORT"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"; tail -n 40 "$LOG_FILE" >&2
      die "broker exited during startup (log: $LOG_FILE)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 40 "$LOG_FILE" >&2
      stop >/dev/null 2>&1 || true
      die "broker not ready on 127.0.0.1:$PORT after ${TIMEOUT}s, killed it (log: $LOG_FILE)"
    fi
    sleep 0.1
  done
  log "ready on 127.0.0.1:$PORT (pid $pid, data $DATA_DIR, log $LOG_FILE)"
}

stop() {
  local pid waited=0 limit=$((${KAFKA_STOP_TIMEOUT:-30} * 10))
  if ! pid=$(running_pid); then rm -f "$PID_FILE"; log "not running"; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((waited < limit)); do sleep 0.1; waited=$((waited + 1)); done
  if kill -0 "$pid" 2>/dev/null; then
    log "no exit after ${KAFKA_STOP_TIMEOUT:-30}s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  log "stopped (pid $pid)"
}

status() {
  local pid port=$PORT
  if pid=$(running_pid); then
    port=$(sed -n 's|^listeners=PLAINTEXT://[^:]*:\([0-9]*\),.*|\1|p' "$PROPS" 2>/dev/null || true)
    if port_open "${port:-$PORT}"; then echo "running: pid $pid, 127.0.0.1:${port:-$PORT}, data $DATA_DIR"
    else echo "starting: pid $pid, 127.0.0.1:${port:-$PORT} not accepting yet, data $DATA_DIR"; fi
    return 0
  fi
  echo "stopped (data $DATA_DIR)"; return 3
}

# --- arguments ---------------------------------------------------------------
CMD='' FOREGROUND=0 OVERRIDES=()
PORT=${KAFKA_PORT:-9092} CPORT=${KAFKA_CONTROLLER_PORT:-} DATA_DIR=${KAFKA_DATA_DIR:-$REPO/.data/kafka}
LOG_FILE=${KAFKA_LOG_FILE:-} LOG_FILE_SET=${KAFKA_LOG_FILE:-} TIMEOUT=${KAFKA_START_TIMEOUT:-60}
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --port) PORT=${2:?--port needs a value}; shift ;;
    --controller-port) CPORT=${2:?--controller-port needs a value}; shift ;;
    --data-dir) DATA_DIR=${2:?--data-dir needs a value}; shift ;;
    --log-file) LOG_FILE=${2:?--log-file needs a value}; LOG_FILE_SET=1; shift ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift ;;
    --foreground) FOREGROUND=1 ;;
    --override) OVERRIDES+=(--override "${2:?--override needs K=V}"); shift ;;
    fetch|start|stop|restart|status) [[ -z $CMD ]] || die "one command at a time"; CMD=$1 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
[[ $PORT =~ ^[0-9]+$ ]] || die "bad port: $PORT"
CPORT=${CPORT:-$((PORT + 1))}
[[ $CPORT =~ ^[0-9]+$ && $CPORT != "$PORT" ]] || die "bad controller port: $CPORT"
[[ $CMD == start || $CMD == restart ]] && mkdir -p "$DATA_DIR"
[[ -d $DATA_DIR ]] && DATA_DIR=$(cd "$DATA_DIR" && pwd)
PROPS=$DATA_DIR/server.properties
PID_FILE=$DATA_DIR/kafka.pid
LOG_FILE=${LOG_FILE:-$DATA_DIR/kafka.log}

case $CMD in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  *) usage >&2; exit 2 ;;
esac
