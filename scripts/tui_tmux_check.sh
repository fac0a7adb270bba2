#!/usr/bin/env bash
# Real-terminal check of the TUI: start it in tmux at 120x40, check that the form, the CLIP
# probability bars and a preview are drawn (capture-pane), press the quit key, check it exits.
#
#   scripts/tui_tmux_check.sh [MODEL] [DEVICE]     (default: digits cpu)
#
# Exit 0 when every check passes; 1 with the failing check and the captured screen otherwise;
# 77 when tmux is missing. Uses a throwaway config dir, so remembered values do not interfere.
set -u
MODEL="${1:-digits}"
DEVICE="${2:-cpu}"
PY="${PYTHON:-python}"
[ -x .venv/bin/python ] && PY="${PYTHON:-.venv/bin/python}"
command -v tmux >/dev/null || { echo "tmux not found: skipped"; exit 77; }

SESSION="clipterm-check-$$"
WORK="$(mktemp -d)"
trap 'tmux kill-session -t "$SESSION" 2>/dev/null; rm -rf "$WORK"' EXIT
SCREEN="$WORK/screen.txt"

fail() {
  echo "FAIL: $1"
  [ -f "$SCREEN" ] && { echo "--- screen ---"; cat "$SCREEN"; }
  exit 1
}
capture() { tmux capture-pane -p -t "$SESSION" > "$SCREEN" 2>/dev/null; }
wait_for() {  # wait_for PATTERN SECONDS
  local deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    capture
    grep -q -- "$1" "$SCREEN" && return 0
    sleep 0.5
  done
  return 1
}

# -x/-y size the window; status off so the pane is the full 120x40
tmux new-session -d -s "$SESSION" -x 120 -y 40 \
  "XDG_CONFIG_HOME='$WORK/config' TERM=xterm-256color $PY -m clipterm --reset --model '$MODEL' \
   --device '$DEVICE' -n 8 --steps 20; echo EXITED \$? > '$WORK/exit'; sleep 30"
tmux set-option -t "$SESSION" status off >/dev/null

wait_for "Run  ctrl+r" 60 || fail "the form was not drawn"
grep -q "Prompt" "$SCREEN" && grep -q "Method" "$SCREEN" || fail "form fields missing"
echo "ok: form drawn"

tmux send-keys -t "$SESSION" C-r
wait_for "finished: 8 samples" 180 || fail "the run did not finish"
grep -q "▸" "$SCREEN" || fail "no target bar"
grep -q "%" "$SCREEN" || fail "no probabilities"
echo "ok: probability bars drawn"
[ "$(grep -o '▀' "$SCREEN" | wc -l)" -ge 64 ] || fail "no half-block preview"
echo "ok: preview drawn"

tmux send-keys -t "$SESSION" C-q
for _ in $(seq 1 40); do
  [ -f "$WORK/exit" ] && break
  sleep 0.25
done
[ -f "$WORK/exit" ] || fail "the app did not exit on ctrl+q"
grep -q "EXITED 0" "$WORK/exit" || fail "exit status: $(cat "$WORK/exit")"
echo "ok: exited on ctrl+q"
echo "PASS"
