#!/usr/bin/env python3
"""Scores a test CSV with scikit-learn's IsolationForest, for the parity test.

Trains StandardScaler + IsolationForest (the seed's model, done correctly: the scaler is
applied to training and test rows alike) on the training CSV, and prints the anomaly score
of every test row, one per line, as `-score_samples` (higher = more anomalous), so it is
directly comparable with VitalWatch's score.

With --repeats K, K forests are trained with random_state seed, seed+1, ... and the printed
score is their mean: one forest's ROC AUC varies by about ±0.013 with its seed, too much for
a 0.01 parity margin, while the mean of K forests compares the algorithms rather than the
luck of one draw.

Columns: the CSV header's feature columns are used in the order given by --features
(default: the seed's four). A `label` column is ignored here.

Needs: pip install scikit-learn   (brings numpy, scipy, joblib, threadpoolctl)
"""

import argparse
import csv
import sys


def read_matrix(path, features):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in features if name not in (reader.fieldnames or [])]
        if missing:
            sys.exit(f"{path}: missing column(s) {', '.join(missing)}")
        return [[float(row[name]) for name in features] for row in reader]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="training CSV")
    parser.add_argument("--test", required=True, help="test CSV to score")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--sample-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="forests to average")
    parser.add_argument(
        "--features",
        default="heart_rate,body_temp,signal_strength,battery_level",
        help="comma-separated feature columns",
    )
    args = parser.parse_args()
    try:
        import numpy as np
        from sklearn.ensemble import IsolationForest
        from sklearn.preprocessing import StandardScaler
    except ImportError as err:
        sys.exit(f"scikit-learn is not installed ({err}); run: pip install scikit-learn")

    features = args.features.split(",")
    train = np.asarray(read_matrix(args.train, features), dtype=np.float64)
    test = np.asarray(read_matrix(args.test, features), dtype=np.float64)
    scaler = StandardScaler().fit(train)
    train_scaled, test_scaled = scaler.transform(train), scaler.transform(test)
    scores = np.zeros(len(test))
    for repeat in range(args.repeats):
        model = IsolationForest(
            n_estimators=args.trees,
            max_samples=min(args.sample_size, len(train)),
            random_state=(args.seed + repeat) % (2**32),
        ).fit(train_scaled)
        scores += -model.score_samples(test_scaled)
    scores /= args.repeats
    out = sys.stdout
    for value in scores:
        out.write(f"{float(value)!r}\n")


if __name__ == "__main__":
    main()
