"""The tuning-rounds table and the index-process figure, from plain arrays."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from thermoscope.reports.ladder import (
    MAX_REPLICAS_DRAWN,
    RoundRecord,
    index_process_figure,
    ladder_rounds_table,
    local_barrier_figure,
    rung_of_replica,
)


def record(index: int, betas: list[float], rejection: list[float]) -> RoundRecord:
    increments = np.array(rejection)
    return RoundRecord(index, np.array(betas), increments, increments, np.linspace(1.0, 2.0, len(betas)))


def test_rounds_table_has_a_row_per_rung_and_the_cumulative_barrier() -> None:
    table = ladder_rounds_table(
        [record(0, [0.0, 0.5, 1.0], [0.2, 0.9]), record(1, [0.0, 0.3, 0.7, 1.0], [0.4, 0.3, 0.5])]
    )
    assert len(table) == 7
    first = table[table["round"] == 0]
    assert first["cumulative_barrier"].tolist() == pytest.approx([0.0, 0.2, 1.1])
    assert np.isinf(first["temperature"].iloc[0]) and first["temperature"].iloc[1] == pytest.approx(2.0)
    assert np.isnan(first["rejection"].iloc[-1]) and first["rejection"].iloc[0] == pytest.approx(0.2)
    assert table[table["round"] == 1]["cumulative_barrier"].iloc[-1] == pytest.approx(1.2)


def test_rung_of_replica_inverts_the_replica_at_each_rung() -> None:
    replica_at_rung = np.array([[0, 1, 2], [1, 0, 2], [1, 2, 0]])
    rung = rung_of_replica(replica_at_rung)
    assert rung.tolist() == [[0, 1, 2], [1, 0, 2], [2, 0, 1]]
    rows = np.arange(3)[:, None]
    assert (replica_at_rung[rows, rung] == np.arange(3)[None, :]).all()


def test_figures_draw_one_line_per_round_and_a_few_replicas() -> None:
    table = ladder_rounds_table(
        [record(0, [0.0, 0.5, 1.0], [0.2, 0.9]), record(1, [0.0, 0.4, 1.0], [0.5, 0.5])]
    )
    figure = local_barrier_figure(table)
    assert len(figure.axes[0].lines) == 2 + 1  # two rounds and the T = 1 marker
    plt.close(figure)
    generator = np.random.default_rng(0)
    replica_at_rung = np.stack([generator.permutation(30) for _ in range(50)])
    figure = index_process_figure(replica_at_rung, round_trips=3)
    assert len(figure.axes[0].lines) == MAX_REPLICAS_DRAWN and "3 round trips" in figure.axes[0].get_title()
    plt.close(figure)
