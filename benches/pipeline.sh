#!/usr/bin/env bash
# End-to-end measurements of citywatch on this machine; results go to stdout.
#   bash benches/pipeline.sh replay     # in-process decode + dataflow, 100k elevators, 1 and 2 workers
#   bash benches/pipeline.sh memory     # RSS per registered device, idle and with every device online
#   bash benches/pipeline.sh mosquitto  # QoS 1 through Mosquitto: plain subscriber vs citywatch
#   bash benches/pipeline.sh soak [SECONDS]  # RSS sampled under steady load (default 600 s)
#   bash benches/pipeline.sh influx     # points/s into VictoriaMetrics; CPU of citywatch with and without the sink
#   bash benches/pipeline.sh alerts     # alert transitions/s through the journal, webhooks/s, apply → webhook latency
# Needs: cargo, mosquitto, mosquitto_sub (Debian: mosquitto, mosquitto-clients), victoria-metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p citywatch -p citywatch-benches
CW=target/release/citywatch
WORK=${WORK:-/tmp/citywatch-bench}
mkdir -p "$WORK"

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

metric_sum() { # sum of a metric family from /metrics
  curl -s "http://$1/metrics" | awk -v m="$2" '$1 ~ "^"m"({|$)" {s += $2} END {printf "%d\n", s}'
}

wait_ready() {
  for _ in $(seq 1 400); do curl -sf "http://$1/readyz" >/dev/null && return 0; sleep 0.05; done
  echo "citywatch not ready" >&2; return 1
}

start_mosquitto() { # port
  cat > "$WORK/mosquitto.conf" <<CONF
listener $1 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 100
message_size_limit 0
CONF
  mosquitto -c "$WORK/mosquitto.conf" >/dev/null 2>&1 &
  MOSQ=$!
  for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done
}

# Every load comes from the one simulated city (`citywatch simulate`): here only elevators,
# each reporting every second (a flat load of one message per elevator and second), no
# incidents.
FLAT=(--kitchens 0 --markets 0 --merchants 0 --incident-every 0 --idle-report-every 1)

city_record() { # elevators seconds dir: the city's reference files and a recording of it
  [ -f "$3/recording.jsonl" ] && return 0
  mkdir -p "$3"
  $CW simulate "${FLAT[@]}" --elevators "$1" --seconds "$2" --speed 0 \
    --out "$3/recording.jsonl" --write-reference "$3/reference" >/dev/null
}

city_publish() { # port reference seconds speed seed: the reference's elevators over MQTT, QoS 1
  $CW simulate "${FLAT[@]}" --mqtt "mqtt://127.0.0.1:$1" --reference "$2" --seconds "$3" \
    --speed "$4" --seed "$5" --qos 1
}

case "${1:-}" in
replay)
  city_record 100000 10 "$WORK/city100k"
  for w in 1 2; do
    for run in 1 2 3; do
      $CW replay "$WORK/city100k/recording.jsonl" --reference "$WORK/city100k/reference" --workers $w \
        --log-format json 2>&1 >/dev/null | grep -o '"events_per_second":"[0-9]*"' | sed "s/^/workers=$w run=$run /"
    done
  done
  ;;
memory)
  city_record 100000 10 "$WORK/city100k"
  start_mosquitto 18831
  for ref in examples/reference "$WORK/city100k/reference"; do
    rm -rf "$WORK/data"
    $CW run --mqtt mqtt://127.0.0.1:18831 --http 127.0.0.1:18081 --reference "$ref" --data-dir "$WORK/data" 2>/dev/null &
    PID=$!
    wait_ready 127.0.0.1:18081
    sleep 2
    idle=$(rss_kb $PID)
    online=""
    if [ "$ref" != examples/reference ]; then
      # Every registered elevator sends one frame: all 100k online.
      city_publish 18831 "$ref" 1 0 1 >/dev/null
      until [ "$(metric_sum 127.0.0.1:18081 citywatch_dataflow_events_total)" -ge 100000 ]; do sleep 0.2; done
      sleep 3
      online=$(rss_kb $PID)
    fi
    echo "reference=$ref rss_idle_kb=$idle rss_all_online_kb=${online:-n/a}"
    kill -TERM $PID; wait $PID || true
  done
  kill $MOSQ
  ;;
mosquitto)
  N=${N:-500000} # a multiple of the 100 000 elevators
  city_record 100000 10 "$WORK/city100k"
  start_mosquitto 18832
  # The broker's own pace: a plain QoS 1 subscriber that does nothing with the messages.
  start=$(date +%s.%N)
  mosquitto_sub -p 18832 -q 1 -i plain -t 'cw/v1/#' -C $N > /dev/null &
  SUB=$!
  sleep 0.5
  city_publish 18832 "$WORK/city100k/reference" $((N / 100000)) 0 2 2>&1 | sed 's/^/publisher: /'
  wait $SUB
  end=$(date +%s.%N)
  echo "plain subscriber: $N msgs in $(echo "$end - $start - 0.5" | bc) s"
  # citywatch in the same place, counting into its live counters.
  rm -rf "$WORK/data"
  $CW run --mqtt mqtt://127.0.0.1:18832 --http 127.0.0.1:18082 --reference "$WORK/city100k/reference" \
    --data-dir "$WORK/data" 2>/dev/null &
  PID=$!
  wait_ready 127.0.0.1:18082
  start=$(date +%s.%N)
  city_publish 18832 "$WORK/city100k/reference" $((N / 100000)) 0 3 2>&1 | sed 's/^/publisher: /'
  until [ "$(metric_sum 127.0.0.1:18082 citywatch_dataflow_events_total)" -ge $N ]; do sleep 0.05; done
  end=$(date +%s.%N)
  echo "citywatch: $N msgs into counters in $(echo "$end - $start" | bc) s"
  kill -TERM $PID; wait $PID || true
  kill $MOSQ
  ;;
soak)
  SECS=${2:-600}
  start_mosquitto 18833
  city_record 20000 1 "$WORK/city20k"
  rm -rf "$WORK/data"
  $CW run --mqtt mqtt://127.0.0.1:18833 --http 127.0.0.1:18083 --reference "$WORK/city20k/reference" --data-dir "$WORK/data" 2>/dev/null &
  PID=$!
  wait_ready 127.0.0.1:18083
  city_publish 18833 "$WORK/city20k/reference" "$SECS" 1 1 >/dev/null 2>&1 &
  PUB=$!
  t=0
  while kill -0 $PUB 2>/dev/null; do
    echo "t=${t}s rss_kb=$(rss_kb $PID) events=$(metric_sum 127.0.0.1:18083 citywatch_dataflow_events_total) lag_s=$(curl -s http://127.0.0.1:18083/metrics | awk '/^citywatch_frontier_lag_seconds/ {print $2}') queue=$(metric_sum 127.0.0.1:18083 citywatch_ingest_queue_depth)"
    sleep 30; t=$((t + 30))
  done
  kill -TERM $PID; wait $PID || true
  kill $MOSQ
  ;;
influx)
  rm -rf "$WORK/vm"
  victoria-metrics -httpListenAddr=127.0.0.1:18434 -storageDataPath="$WORK/vm" -loggerLevel=ERROR >/dev/null 2>&1 &
  VM=$!
  until curl -sf http://127.0.0.1:18434/health >/dev/null; do sleep 0.1; done
  target/release/influx_load --url http://127.0.0.1:18434 --points 1000000 --series 10000
  # The sink's share of the pipeline: citywatch's CPU time under the same MQTT load, with and
  # without the sink (with it, the window operators run too: they exist for the sink).
  start_mosquitto 18835
  city_record 20000 1 "$WORK/city20k"
  for mode in without with; do
    rm -rf "$WORK/data"
    extra=()
    [ $mode = with ] && extra=(--influx-url http://127.0.0.1:18434)
    CITYWATCH_MQTT_CLIENT_ID=cw-$mode $CW run --mqtt mqtt://127.0.0.1:18835 --http 127.0.0.1:18084 \
      --reference "$WORK/city20k/reference" --data-dir "$WORK/data" "${extra[@]}" 2>/dev/null &
    PID=$!
    wait_ready 127.0.0.1:18084
    t0=$(awk '{print $14 + $15}' /proc/$PID/stat)
    city_publish 18835 "$WORK/city20k/reference" 60 1 5 >/dev/null 2>&1
    t1=$(awk '{print $14 + $15}' /proc/$PID/stat)
    written=$(metric_sum 127.0.0.1:18084 citywatch_influx_points_written_total)
    echo "$mode sink: citywatch cpu $(echo "($t1 - $t0) / $(getconf CLK_TCK)" | bc -l | cut -c1-6) s over 60 s of 20k msgs/s; points written $written"
    kill -TERM $PID; wait $PID || true
  done
  kill $MOSQ $VM
  ;;
alerts)
  for n in 2000 20000; do target/release/alerts_load --alerts $n; done
  ;;
*)
  sed -n '2,8p' "$0"; exit 2 ;;
esac
