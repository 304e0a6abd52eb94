#!/usr/bin/env bash
# A chat that grows turn by turn: `precept serve` and llama.cpp's OpenAI-compatible server
# (llama-cpp-python[server]) on SmolLM2-135M-Instruct, same machine, one after the other. The
# first request carries about 1000 tokens of notes; each later one resends the whole conversation
# with the reply and a short new question, as chat clients do. Prints each turn's seconds
# (16 greedy tokens), so the later turns show whether a server reuses the conversation's cache.
#
#   scripts/bench-chat-turns.sh [TURNS]
#
# Needs: target/release/precept, checkpoints/smollm2-135m-instruct (scripts/fetch-smollm2.sh),
# an F32 GGUF of the same weights in $GGUF, and python with llama-cpp-python[server] in $PYTHON.
set -euo pipefail
turns=${1:-4}
model=${MODEL:-checkpoints/smollm2-135m-instruct}
gguf=${GGUF:-$HOME/.cache/precept/SmolLM2-135M-Instruct.F32.gguf}
python=${PYTHON:-python3}
precept=${PRECEPT:-target/release/precept}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

wait_for() { # URL
  for _ in $(seq 1 120); do curl -sf "$1/v1/models" >/dev/null && return 0; sleep 1; done
  echo "no server at $1" >&2; return 1
}

chat() { # URL
  python3 - "$1" "$turns" <<'PY'
import json, sys, time, urllib.request
url, turns = sys.argv[1], int(sys.argv[2])
wings = ["north", "south", "east", "west"]
notes = " ".join(f"Item {i}: the museum's {wings[i % 4]} wing holds {i * 3} paintings from the {1500 + i * 7}s."
                 for i in range(40))
messages = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"Here are my notes:\n{notes}\nSummarise them in one sentence."}]
seconds = []
for turn in range(turns):
    body = json.dumps({"model": "smollm2", "messages": messages, "max_tokens": 16, "temperature": 0}).encode()
    request = urllib.request.Request(url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
    started = time.time()
    reply = json.load(urllib.request.urlopen(request))["choices"][0]["message"]["content"]
    seconds.append(round(time.time() - started, 2))
    messages += [{"role": "assistant", "content": reply},
                 {"role": "user", "content": f"Which wing comes first in the notes? (question {turn + 1})"}]
print(json.dumps({"seconds_per_turn": seconds}))
PY
}

$precept serve --model "$model" --addr 127.0.0.1:8090 --served-model-name smollm2 --quiet &
pids+=($!)
wait_for http://127.0.0.1:8090
echo -n "precept serve: "
chat http://127.0.0.1:8090
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true

$python -m llama_cpp.server --model "$gguf" --model_alias smollm2 --host 127.0.0.1 --port 8091 \
  --n_ctx 4096 --n_threads "$(nproc)" >/dev/null 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:8091
echo -n "llama.cpp server: "
chat http://127.0.0.1:8091
