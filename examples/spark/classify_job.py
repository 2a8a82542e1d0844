"""Classify a corpus on Apache Spark with the static `emotions` binary.

Each partition streams its texts through `emotions classify --texts -` (the binary ships to
the executors with `--files`; they need nothing installed), the JSON Lines come back as
columns, and the result is written as Parquet:

    id (long, input order) | text | labels (array<string>) | admiration ... neutral (float)

Run it:

    spark-submit --master local[2] --files target/x86_64-unknown-linux-gnu/release/emotions \\
        examples/spark/classify_job.py --input texts.txt --output scores.parquet
    # a Parquet column instead of a text file:
    spark-submit ... examples/spark/classify_job.py --input comments.parquet --column body \\
        --output scores.parquet

Texts are one per row; a newline inside a text is replaced by a space, since the binary reads
one text per line.
"""

import argparse
import json
import subprocess
import threading

from pyspark import SparkFiles, StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import types as T

LABELS = [
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
    "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
    "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism",
    "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral",
]


def classify_partition(binary_name, extra_args):
    """A function for mapPartitions: (id, text) rows in, (id, text, labels, scores...) out,
    in the same order, through one `emotions` process per partition."""

    def run(rows):
        rows = iter(rows)
        first = next(rows, None)
        if first is None:
            return
        binary = SparkFiles.get(binary_name)
        proc = subprocess.Popen(
            [binary, "classify", "--texts", "-", *extra_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        pending = []  # (id, text) in the order written; the binary keeps that order
        lock = threading.Lock()

        def feed():
            try:
                for row_id, text in [first, *rows]:
                    line = text.replace("\r", " ").replace("\n", " ")
                    with lock:
                        pending.append((row_id, text))
                    proc.stdin.write(line.encode("utf-8") + b"\n")
            finally:
                proc.stdin.close()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        done = 0
        for line in proc.stdout:
            result = json.loads(line)
            with lock:
                row_id, text = pending[done]
            done += 1
            scores = result["scores"]
            yield (row_id, text, result["labels"], *(float(scores[l]) for l in LABELS))
        feeder.join()
        err = proc.stderr.read().decode("utf-8", "replace")
        if proc.wait() != 0 or done != len(pending):
            raise RuntimeError(
                f"emotions exited with {proc.returncode} after {done} of {len(pending)} texts: {err}"
            )

    return run


SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType(), False),
        T.StructField("text", T.StringType(), True),
        T.StructField("labels", T.ArrayType(T.StringType()), False),
        *[T.StructField(label, T.FloatType(), False) for label in LABELS],
    ]
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="a text file (one text per line) or a Parquet file")
    parser.add_argument("--column", help="the text column of a Parquet input")
    parser.add_argument("--output", required=True, help="where to write the Parquet result")
    parser.add_argument("--binary-name", default="emotions", help="the file name shipped with --files")
    parser.add_argument(
        "--partitions",
        type=int,
        help="repartition to this many partitions (a shuffle, then a sort back into input order)",
    )
    parser.add_argument(
        "--emotions-args",
        default="--threads 1",
        help="extra flags for `emotions classify` (default: one thread per task)",
    )
    args = parser.parse_args()

    spark = SparkSession.builder.appName("emotions-classify").getOrCreate()
    if args.column:
        texts = spark.read.parquet(args.input).select(args.column).rdd.map(lambda r: r[0] or "")
    else:
        # At least one partition per core, in file order, so that every core runs a binary.
        sc = spark.sparkContext
        texts = sc.textFile(args.input, minPartitions=sc.defaultParallelism)
    # Ids before anything moves: they are the input order.
    indexed = texts.zipWithIndex().map(lambda p: (p[1], p[0]))
    if args.partitions:
        indexed = indexed.repartition(args.partitions)
    scored = indexed.mapPartitions(
        classify_partition(args.binary_name, args.emotions_args.split())
    )
    if args.partitions:
        # A repartition shuffles rows; put them back in input order. The sort samples its
        # input first: keep the scores so that the texts are not classified twice.
        scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
    result = spark.createDataFrame(scored, SCHEMA)
    if args.partitions:
        result = result.orderBy("id")
    result.write.mode("overwrite").parquet(args.output)
    spark.stop()


if __name__ == "__main__":
    main()
