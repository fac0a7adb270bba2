#!/usr/bin/env bash
# Real-terminal check of the app, for a person at a shell: start it in tmux at 80x24 and at
# 120x40, check that the form, every caption's probability bar, a preview and the step counter
# are drawn (capture-pane), quit, check it returns to the shell. (tests/tui/test_terminal.py
# checks the same and more under pytest.)
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

SOCKET="clipterm-check-$$"
WORK="$(mktemp -d)"
trap 'tmux -L "$SOCKET" kill-server 2>/dev/null; rm -rf "$WORK"' EXIT
SCREEN="$WORK/screen.txt"

fail() {
  echo "FAIL ($SIZE): $1"
  [ -f "$SCREEN" ] && { echo "--- screen ---"; cat "$SCREEN"; }
  exit 1
}
capture() { tmux -L "$SOCKET" capture-pane -p -t main > "$SCREEN" 2>/dev/null; }
wait_for() {  # wait_for PATTERN SECONDS
  local deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    capture
    grep -q -- "$1" "$SCREEN" && return 0
    sleep 0.5
  done
  return 1
}

for SIZE in 80x24 120x40; do
  W="${SIZE%x*}"; H="${SIZE#*x}"
  rm -f "$WORK/exit"
  tmux -L "$SOCKET" -f /dev/null new-session -d -s main -x "$W" -y "$H" \
    "unset COLUMNS LINES; XDG_CONFIG_HOME='$WORK/config' TERM=xterm-256color $PY -m clipterm \
     --reset --model '$MODEL' --device '$DEVICE' -n 8 --steps 20; echo \$? > '$WORK/exit'; sleep 60"
  tmux -L "$SOCKET" set-option -t main status off >/dev/null

  wait_for "Run  ctrl+r" 120 || fail "the form was not drawn"
  grep -q "Prompt" "$SCREEN" && grep -q "Method" "$SCREEN" || fail "form fields missing"
  echo "ok ($SIZE): form drawn"

  tmux -L "$SOCKET" send-keys -t main C-r
  wait_for "step " 300 || fail "no step counter"
  echo "ok ($SIZE): step counter"
  wait_for "finished: 8 samples" 600 || fail "the run did not finish"
  grep -q "▸" "$SCREEN" || fail "no target bar"
  [ "$(grep -c '%.*%' "$SCREEN")" -ge 3 ] || fail "no probabilities"
  echo "ok ($SIZE): probability bars drawn"
  [ "$(grep -o '▀' "$SCREEN" | wc -l)" -ge 64 ] || fail "no half-block preview"
  echo "ok ($SIZE): preview drawn"

  tmux -L "$SOCKET" send-keys -t main C-q
  wait_for "not saved" 30 || fail "no question about the unsaved run"
  tmux -L "$SOCKET" send-keys -t main q
  for _ in $(seq 1 120); do
    [ -f "$WORK/exit" ] && break
    sleep 0.25
  done
  [ -f "$WORK/exit" ] || fail "the app did not exit"
  grep -qx "0" "$WORK/exit" || fail "exit status: $(cat "$WORK/exit")"
  echo "ok ($SIZE): quit to the shell"
  tmux -L "$SOCKET" kill-server 2>/dev/null
done
echo "PASS"
