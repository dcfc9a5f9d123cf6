#!/usr/bin/env bash
# End-to-end tests of minimoe sample, chat and serve on a small trained model: stop strings,
# a piped chat session, and a real HTTP server spoken to with curl (completions, streaming,
# bad and concurrent requests, shutdown on SIGTERM).
#
#   tests/cli/test_inference.sh path/to/minimoe
set -euo pipefail
minimoe=$(realpath "$1")
work=$(mktemp -d)
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill -9 "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

mkdir corpus
for i in $(seq 1 300); do echo "User: hello $i. Assistant: the cat sat on mat $i."; done >corpus/chat.txt
"$minimoe" train --preset tiny --data corpus --tokenizer bytes --batch-size 2 --context 32 \
  --threads 1 --warmup 5 --steps 30 --eval-every 30 --eval-batches 1 --sample-tokens 0 \
  --out run >/dev/null 2>train.txt || fail "training: $(cat train.txt)"
model=run/model.safetensors

echo "--- sample: stop strings, same seed same text"
"$minimoe" sample --ckpt "$model" --prompt "User:" --tokens 40 --seed 2 --stop "." >s1.txt
"$minimoe" sample --ckpt "$model" --prompt "User:" --tokens 40 --seed 2 --stop "." >s2.txt
cmp -s s1.txt s2.txt || fail "the same seed sampled different text"
[[ "$(tail -c +6 s1.txt)" != *.* ]] || fail "the sample runs past its stop string: $(cat s1.txt)"

echo "--- chat, piped: one reply line per message, /reset, /help"
printf 'hello\n/help\n\n/reset\nhow are you?\n' |
  "$minimoe" chat --ckpt "$model" --tokens 12 --seed 1 >chat.txt 2>chat-err.txt ||
  fail "chat: $(cat chat-err.txt)"
grep -q "/reset" chat.txt || fail "chat /help does not list /reset: $(cat chat.txt)"
[[ $(grep -vc "^  /\|^Type a message" chat.txt) -eq 2 ]] ||
  fail "chat did not reply once per message: $(cat chat.txt)"
printf 'hello\n' | "$minimoe" chat --ckpt "$model" --tokens 12 --seed 1 >chat2.txt
[[ "$(head -1 chat.txt)" == "$(cat chat2.txt)" ]] || fail "the same seed chatted differently"
status=0
"$minimoe" chat --ckpt "$model" --tokens 5000 </dev/null 2>err.txt || status=$?
[[ $status -eq 2 ]] && grep -q "no room" err.txt || fail "chat --tokens beyond the context: $status"

echo "--- serve"
command -v curl >/dev/null || { echo "curl is missing" >&2; exit 1; }
for attempt in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 20000))
  "$minimoe" serve --ckpt "$model" --port "$port" --threads 1 --name tiny 2>serve.txt &
  server_pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$server_pid" 2>/dev/null && break
  wait "$server_pid" || true
  server_pid=""
done
[[ -n "$server_pid" ]] || { echo "FAIL: the server did not start: $(cat serve.txt)" >&2; exit 1; }
url="http://127.0.0.1:$port"

# request METHOD PATH BODY: prints the body, then the status on the last line.
request() { curl -s -X "$1" "$url$2" -H 'Content-Type: application/json' --data-binary "$3" -w '\n%{http_code}'; }
expect() {  # expect STATUS PATTERN METHOD PATH BODY
  local reply
  reply=$(request "$3" "$4" "$5")
  [[ "$(tail -1 <<<"$reply")" == "$1" ]] || fail "$3 $4 $5: status $(tail -1 <<<"$reply"), expected $1"
  grep -q -- "$2" <<<"$reply" || fail "$3 $4 $5: reply lacks '$2': $reply"
}
expect 200 '"status":"ok"' GET /health ''
expect 200 '"id":"tiny"' GET /v1/models ''
expect 200 '"object":"text_completion"' POST /v1/completions '{"model":"tiny","prompt":"User:","max_tokens":8,"seed":1}'
expect 200 '"role":"assistant"' POST /v1/chat/completions '{"messages":[{"role":"user","content":"hello"}],"max_tokens":8}'
expect 400 '"code":"invalid_json"' POST /v1/completions '{"prompt":'
expect 400 '"param":"temperature"' POST /v1/completions '{"prompt":"a","temperature":"warm"}'
expect 400 '"code":"model_not_found"' POST /v1/completions '{"prompt":"a","model":"gpt-4"}'
expect 400 '"code":"context_length_exceeded"' POST /v1/completions '{"prompt":"a","max_tokens":100000}'
expect 404 '"error"' GET /v1/nothing ''
head -c 2000000 /dev/zero | tr '\0' ' ' >big.json
[[ "$(curl -s -o big-reply.txt -w '%{http_code}' "$url/v1/completions" --data-binary @big.json)" == 413 ]] ||
  fail "a 2 MB body was not refused with 413"
grep -q '"error"' big-reply.txt || fail "the 413 reply is not an error object: $(cat big-reply.txt)"

# The same seed gives the same text; streaming gives it too, chunk by chunk, then [DONE].
body='{"prompt":"User: hello","max_tokens":12,"seed":5,"temperature":0.8}'
whole=$(curl -s "$url/v1/completions" -d "$body")
curl -s -N "$url/v1/completions" -d "${body%\}},\"stream\":true}" >stream.txt
grep -q '^data: \[DONE\]$' stream.txt || fail "the stream does not end with [DONE]: $(cat stream.txt)"
[[ $(grep -c '^data: {' stream.txt) -ge 2 ]] || fail "the stream has no chunks: $(cat stream.txt)"
python3 - "$whole" stream.txt <<'PY' || fail "the streamed text differs from the whole reply"
import json, sys
whole = json.loads(sys.argv[1])["choices"][0]["text"]
chunks = [json.loads(l[6:]) for l in open(sys.argv[2]) if l.startswith("data: {")]
assert "".join(c["choices"][0]["text"] for c in chunks) == whole, (chunks, whole)
assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
PY

# Concurrent clients: each gets the answer it would get alone.
clients=()
for i in 1 2 3 4; do
  curl -s "$url/v1/completions" -d "$body" >"concurrent-$i.json" &
  clients+=($!)
done
wait "${clients[@]}"
for i in 1 2 3 4; do
  python3 -c "import json,sys; a=json.load(open(sys.argv[1])); b=json.loads(sys.argv[2]); \
assert a['choices'][0]['text'] == b['choices'][0]['text']" "concurrent-$i.json" "$whole" ||
    fail "concurrent request $i: $(cat "concurrent-$i.json")"
done

kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
[[ $status -eq 0 ]] || fail "the server exited with $status on SIGTERM"
grep -q "shutting down" serve.txt || fail "the server did not say it was shutting down"

if ((failures > 0)); then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "all inference command-line tests passed"
