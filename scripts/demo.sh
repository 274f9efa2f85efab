#!/usr/bin/env bash
# The whole flywheel on the embedded default, as far as it exists today:
# convert the MIT demo set to teacher logs -> ingest (with a few broken lines) -> stats -> models
# -> dataset -> one flywheel job (train, evaluate against the teacher, decide).
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
if [[ "${STUDENTS:-minilm}" == "all" ]]; then CANDIDATES=(); else CANDIDATES=(--candidate minilm-classifier); fi
step "Run a whole flywheel job on the in-process worker: build -> evaluate/train every candidate -> decide
    (MiniLM capped at 200 steps for the demo; STUDENTS=all adds the SmolLM2 LoRA student, slow on CPU)" \
  $FW jobs create --workload news_topic --client demo "${CANDIDATES[@]}" --set training.max_steps=200 --wait
step "Jobs so far (the REST API shows the same: flywheel serve api, then GET /api/jobs)" $FW jobs list

cat <<'MSG'

Done. What ran: demo data converted to OpenAI-format teacher logs, ingested into the embedded
SQLite log store (var/logs.sqlite) with malformed lines quarantined by reason, the packaged
models cached as safetensors (var/models) and verified with a forward pass, a dataset built
from the newest 10,000 logs (var/artifacts/datasets: content-addressed splits + manifest), a
flywheel job (var/jobs.sqlite) that trained a MiniLM classifier student on CPU
(var/artifacts/students), scored it against the teacher's answers with a bootstrap CI and
decided by the promotion policy whether it replaces the teacher.
Try next: flywheel serve api   (then http://127.0.0.1:8000/docs, POST /api/jobs)
          flywheel jobs show <id>
Not yet in the demo: promotion through the gateway (issue 7) and the dashboard (issue 9).
MSG
