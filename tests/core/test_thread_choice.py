"""The server's choice of threads for wide passes, from its own pass times."""

import pytest

from playground.core.serve.thread_choice import EXPLORE_EVERY, TRIAL_PASSES, ThreadChoice, Way


def run(choice: ThreadChoice, cost: dict[int, float], passes: int, rows: int = 8) -> list[int]:
    picked = []
    for _ in range(passes):
        count = choice.pick()
        picked.append(count)
        choice.record(count, cost[count] * rows, rows)
    return picked


def test_alternates_while_trying_then_keeps_the_faster_and_still_tries_the_other():
    choice = ThreadChoice((2, 1))
    picked = run(choice, {2: 0.004, 1: 0.003}, 2 * TRIAL_PASSES)
    assert picked[:4] == [2, 1, 2, 1] and picked.count(2) == picked.count(1) == TRIAL_PASSES
    assert choice.chosen == 1
    later = run(choice, {2: 0.004, 1: 0.003}, 4 * EXPLORE_EVERY)
    assert later.count(2) == 4 and later.count(1) == 4 * EXPLORE_EVERY - 4


def test_a_change_of_load_changes_the_choice():
    choice = ThreadChoice((2, 1))
    run(choice, {2: 0.002, 1: 0.003}, 2 * TRIAL_PASSES)
    assert choice.chosen == 2
    # every core becomes slower (another process takes one): the explored passes see it
    run(choice, {2: 0.006, 1: 0.003}, 12 * EXPLORE_EVERY)
    assert choice.chosen == 1


def test_one_count_is_no_choice_and_rows_weigh_in():
    assert run(ThreadChoice((1, 1)), {1: 0.001}, 5) == [1] * 5
    with pytest.raises(ValueError, match="no way"):
        ThreadChoice(())
    # seconds a row, not a pass: a long pass on 2 threads is not counted against them
    choice = ThreadChoice((2, 1))
    for _ in range(TRIAL_PASSES):
        choice.record(choice.pick(), 0.032, 32)  # 2 threads: 1 ms a row
        choice.record(choice.pick(), 0.012, 8)  # 1 thread: 1.5 ms a row
    assert choice.chosen == 2


def test_three_ways_each_tried_then_the_fastest_and_the_others_in_turn():
    shared, narrow, parts = Way(2), Way(1), Way(2, 2)
    cost = {shared: 0.004, narrow: 0.003, parts: 0.002}
    choice = ThreadChoice((shared, narrow, parts))
    picked = run(choice, cost, 3 * TRIAL_PASSES)
    assert picked[:3] == [shared, narrow, parts]
    assert all(picked.count(w) == TRIAL_PASSES for w in cost)
    assert choice.chosen == parts
    later = run(choice, cost, 8 * EXPLORE_EVERY)
    # one pass in EXPLORE_EVERY explores, the two others taking turns
    assert later.count(shared) == later.count(narrow) == 4


def test_a_way_a_pass_cannot_take_is_neither_tried_nor_chosen_for_it():
    """Passes whose rows never divide into parts (one client's prompt chunks): the parts
    way is left out of their trial and their choice, and the faster of the other two
    still wins (the trial once waited for the parts way forever, on every core)."""
    shared, narrow, parts = Way(2), Way(1), Way(2, 2)
    choice = ThreadChoice((shared, narrow, parts))
    cost = {shared: 0.004, narrow: 0.003}
    picked = []
    for _ in range(4 * TRIAL_PASSES + 2 * EXPLORE_EVERY):
        way = choice.pick((shared, narrow))
        picked.append(way)
        choice.record(way, cost[way] * 8, 8)
    assert parts not in picked and choice.chosen == narrow
    assert picked[2 * TRIAL_PASSES:].count(narrow) > picked[2 * TRIAL_PASSES:].count(shared)
    # once a pass can take the parts, they get their trial
    assert choice.pick() == parts
