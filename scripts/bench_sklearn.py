#!/usr/bin/env python3
"""Times scikit-learn's IsolationForest the way the seed used it, as a baseline for
`cargo bench -p vitalwatch-core --bench detect`.

Prints one JSON object per line: {"bench": name, "seconds_per_iter": s, "per_element_s": s}.
Data: the seed's four features, synthetic normal vitals (numpy, seeded). Needs scikit-learn.
"""

import argparse
import json
import time

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler


def population(rows, rng):
    hr = rng.normal(72, 8, rows)
    temp = rng.normal(36.7, 0.3, rows)
    signal = np.clip(rng.normal(-65, 8, rows), -90, -40)
    battery = rng.uniform(15, 100, rows)
    return np.column_stack([hr, temp, signal, battery])


def timed(name, func, elements, min_seconds):
    func()  # warm-up
    iters, start = 0, time.perf_counter()
    while True:
        func()
        iters += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            break
    per_iter = elapsed / iters
    print(json.dumps({"bench": name, "seconds_per_iter": per_iter, "per_element_s": per_iter / elements}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    train = population(10_000, rng)
    scaler = StandardScaler().fit(train)
    model = IsolationForest(n_estimators=100, max_samples=256, random_state=7).fit(scaler.transform(train))
    one = train[:1]
    batch = train[:1000]
    # The seed scored each MQTT message on its own: score_samples + predict per row.
    timed("score/one_reading_100_trees", lambda: model.score_samples(scaler.transform(one)), 1, args.seconds)
    timed("predict/one_reading_100_trees", lambda: model.predict(scaler.transform(one)), 1, args.seconds)
    timed("score/batch_1000_100_trees", lambda: model.score_samples(scaler.transform(batch)), 1000, args.seconds)
    timed("predict/batch_1000_100_trees", lambda: model.predict(scaler.transform(batch)), 1000, args.seconds)
    for rows in (1_000, 100_000):
        data = population(rows, rng)

        def fit(data=data):
            scaled = StandardScaler().fit_transform(data)
            # fit() also scores every training row to set offset_, as our train sets the threshold.
            IsolationForest(n_estimators=100, max_samples=256, contamination=0.005, random_state=7).fit(scaled)

        timed(f"train/{rows}_rows_100_trees", fit, rows, args.seconds)


if __name__ == "__main__":
    main()
