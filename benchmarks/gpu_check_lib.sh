# The bookkeeping of benchmarks/gpu_check.sh, sourced by it (and by
# tests/test_gpu_check.py, which runs these functions on fake commands).
#
# The caller sets: STEPS (",a,b," or empty for all), DRY (0/1), DEADLINE and
# START (seconds), LOGDIR (where every log goes), STATUS (steps.tsv), OUTDIR,
# PUBLISH (1 on a remote runner), KEEP (the files copied beside the
# archive), PY.

KILL_AFTER=${KILL_AFTER:-10}  # seconds between timeout's SIGTERM and its SIGKILL

record() {  # record NAME RESULT SECONDS [NOTE]: one line of steps.tsv
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >> "$STATUS"
}

asked() {  # asked NAME: true when --steps names NAME (or there is no --steps)
  [ -z "$STEPS" ] || [ "${STEPS#*,$1,}" != "$STEPS" ]
}

needs() {  # needs STEP DEP...: with --steps, a step asked for brings the steps it cannot do without
  local s=$1 d
  shift
  [ -n "$STEPS" ] && asked "$s" || return 0
  for d in "$@"; do
    if ! asked "$d"; then
      STEPS="${STEPS}$d,"
      echo "gpu_check: --steps: $s needs $d, which is added"
    fi
  done
}

# step NAME CAP MIN COMMAND...: run COMMAND for at most CAP seconds (fewer
# where the script's DEADLINE comes first; not at all where fewer than MIN,
# the least time in which it can tell anything, are left), log to
# LOGDIR/NAME.log, record the result in steps.tsv and publish. Results: the
# exit code; "cut" when the deadline, not CAP, stopped it (not a failure: the
# step was not given its time); "no-time"; "unsupported" when UNSUPPORTED
# (a regex, set for the call) matches the log, i.e. the tool could not run
# here at all.
step() {
  local name=$1 cap=$2 min=$3
  shift 3
  if ! asked "$name"; then
    record "$name" not-asked 0
    return 0
  fi
  echo "== $name: $*"
  if [ "$DRY" = 1 ]; then
    record "$name" dry-run 0
    return 0
  fi
  local left=$(( DEADLINE - ($(date +%s) - START) ))
  if [ "$left" -lt "$min" ]; then
    record "$name" no-time 0 "needs ${min} s, ${left} s left"
    echo "   skipped: it needs $min s, and $left s of the script's $DEADLINE are left"
    publish
    return 0
  fi
  local limit=$cap cut=0
  if [ "$cap" -gt "$left" ]; then limit=$left; cut=1; fi
  local t0 rc=0
  t0=$(date +%s)
  # -k: a command that ignores SIGTERM is killed soon after, not left running past the deadline.
  timeout -k "$KILL_AFTER" "$limit" "$@" > "$LOGDIR/$name.log" 2>&1 || rc=$?
  local result=$rc note=""
  if [ -n "${UNSUPPORTED:-}" ] && grep -Eq "$UNSUPPORTED" "$LOGDIR/$name.log"; then
    # Checked whatever the exit code: a tool that cannot attach may still let the program run and exit 0.
    result=unsupported
    note=$(grep -Eom1 "$UNSUPPORTED" "$LOGDIR/$name.log")
  elif [ "$cut" = 1 ] && { [ "$rc" = 124 ] || [ "$rc" = 137 ]; }; then
    result=cut
    note="stopped by the script's deadline after $limit s (its own cap: $cap s)"
  fi
  record "$name" "$result" "$(( $(date +%s) - t0 ))" "$note"
  tail -3 "$LOGDIR/$name.log"
  publish
  return 0
}

# publish: on a remote runner (PUBLISH=1), which brings back at most 8
# files from $OUT and may kill the command at any moment, after every step:
# gpu_check.json brought up to date, every log into OUTDIR/all.tar.gz
# (replaced by a rename, so it is never half written), and the files read
# first (KEEP) copied beside it. Everything is written in LOGDIR, so OUTDIR
# never holds more than KEEP + all.tar.gz (+ all.tar.gz.tmp for a moment).
publish() {
  [ "$PUBLISH" = 1 ] || return 0
  "$PY" benchmarks/gpu_summary.py "$LOGDIR" > /dev/null 2>&1
  local f files
  files=$(cd "$LOGDIR" && ls -A)
  # shellcheck disable=SC2086  # one word per file: the names are ours, without spaces
  if ! (cd "$LOGDIR" && tar czf "$OUTDIR/all.tar.gz.tmp" $files) 2>/dev/null; then
    rm -f "$OUTDIR/all.tar.gz.tmp"  # no tar or gzip here: the KEEP files below still come back
  else
    mv -f "$OUTDIR/all.tar.gz.tmp" "$OUTDIR/all.tar.gz"
  fi
  for f in $KEEP; do
    if [ -f "$LOGDIR/$f" ]; then cp -f "$LOGDIR/$f" "$OUTDIR/$f"; fi
  done
}
