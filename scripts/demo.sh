#!/usr/bin/env bash
# The whole flywheel on the embedded default, as far as it exists today:
# convert the MIT demo set to teacher logs -> ingest (with a few broken lines) -> stats -> models
# -> dataset -> train a student -> evaluate it against the teacher.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
FW=.venv/bin/flywheel
LOGS=var/demo/teacher_logs.jsonl.gz

step() { printf '\n\033[1m==> %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

step "Turn the Twitter Financial News Topic set (MIT) into teacher logs" \
  $FW data convert twitter_topic --out "$LOGS"
step "Ingest them, plus a sample of malformed lines that must be quarantined, not lost" \
  $FW ingest "$LOGS" data/samples/malformed.jsonl
step "Ingest the same files again: nothing new is stored (record ids are content hashes)" \
  $FW ingest "$LOGS" data/samples/malformed.jsonl
step "What the log store holds" $FW logs stats
step "Why lines were quarantined" $FW logs quarantine --limit 5
step "Materialize the packaged student/teacher models offline and verify them" $FW models fetch
step "The model registry" $FW models list
step "Build a versioned dataset: redact, dedup, detect the type, parse labels, split, ICL" \
  $FW datasets build --workload news_topic --client demo
step "Building again on the same logs and config gives the same dataset id" \
  $FW datasets build --workload news_topic --client demo
step "So the store still holds one dataset" $FW datasets list
DATASET=$($FW datasets build --workload news_topic --client demo --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["dataset_id"][:16])')
step "Train the MiniLM classifier student on CPU (capped at 200 steps for the demo; resumable)" \
  $FW train --dataset "$DATASET" --student minilm-classifier --set max_steps=200
step "Evaluate it against the teacher's answers (base/ICL do not apply to an encoder: it says why)" \
  $FW evaluate --dataset "$DATASET" --candidate minilm-classifier
step "Decide: does it replace the teacher? (judged on the lower CI bound; every candidate gets a reason)" \
  $FW decide --dataset "$DATASET"

cat <<'MSG'

Done. What ran: demo data converted to OpenAI-format teacher logs, ingested into the embedded
SQLite log store (var/logs.sqlite) with malformed lines quarantined by reason, the packaged
models cached as safetensors (var/models) and verified with a forward pass, a dataset built
from the newest 10,000 logs (var/artifacts/datasets: content-addressed splits + manifest), a
MiniLM classifier student trained on CPU (var/artifacts/students) and scored against the
teacher's answers with a bootstrap CI (var/artifacts/evaluations).
Try next: flywheel evaluate --dataset <id> --candidate smollm2-lora --kind base --kind icl
(SmolLM2 with constrained label scoring; a few minutes on CPU).
Not yet in the demo: the job API, promotion and the gateway — they land with the orchestrator
and gateway issues.
MSG
