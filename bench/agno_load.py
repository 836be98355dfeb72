"""Load the benchmark's JSON lines into an Agno database through Agno's own bulk upsert
(runs in Agno's own virtualenv, so its tables and indexes are exactly those Agno makes).

usage: python agno_load.py DATABASE_URL DATASET.jsonl
"""

import json
import sys
from datetime import datetime

from agno.db.schemas.memory import UserMemory
from agno_db import agno_database

BATCH = 5000


def epoch(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def main() -> None:
    db = agno_database(sys.argv[1])
    batch = []
    count = 0
    with open(sys.argv[2], encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            batch.append(UserMemory(
                memory=row["memory"], memory_id=row["memory_id"], topics=row["topics"],
                user_id=row["user_id"], agent_id=row.get("agent_id"),
                created_at=epoch(row["created_at"]), updated_at=epoch(row["updated_at"])))
            if len(batch) == BATCH:
                db.upsert_memories(batch, deserialize=False, preserve_updated_at=True)
                count += len(batch)
                batch = []
    if batch:
        db.upsert_memories(batch, deserialize=False, preserve_updated_at=True)
        count += len(batch)
    # Every table AgentOS wants, made now: left to the server, its workers race to create them.
    db._create_all_tables()
    print(f"agno: loaded {count} memories", file=sys.stderr)


if __name__ == "__main__":
    main()
