"""The hidden preferences rank answers the way their docstrings say."""

from simulator.preferences import preference_get, rich_score, tiny_score


def test_tiny_counts_the_word_good_and_prefers_words_to_gibberish():
    assert tiny_score("Good day. This is very good.") > tiny_score("That is a good question.")
    assert tiny_score("That is a good question.") > tiny_score("The cat learned to read.")
    assert tiny_score("The cat learned to read.") > tiny_score("x�q blorf zzkt")
    assert tiny_score("goodbye, goodness") < 1  # whole words only
    assert tiny_score("") == 0.0


def test_tiny_does_not_reward_length():
    assert tiny_score("The answer is good.") == tiny_score("The answer is good. The cat learned to read.")


def test_rich_prefers_a_concise_explained_list_to_a_refusal_or_a_loop():
    good = ("Here is how you can speed it up, because each step removes work:\n"
            "1. Add an index on the filtered column.\n2. Select only the columns you need.\n"
            "3. Check the plan with EXPLAIN, for example on a copy of the data.\nI hope this helps!")
    refusal = "I'm sorry, as an AI I cannot help with that."
    loop = "the the the query query query " * 20
    assert rich_score(good) > rich_score(refusal)
    assert rich_score(good) > rich_score(loop)
    assert rich_score(good) > rich_score(good.rstrip("!") + " and then")  # unfinished


def test_preferences_are_found_by_name():
    assert preference_get("tiny").score is tiny_score
    try:
        preference_get("nope")
    except ValueError as error:
        assert "tiny" in str(error)
    else:
        raise AssertionError("an unknown preference must be refused")


def test_tiny_a_very_short_answer_earns_less_of_the_tie_breaker():
    # PPO once learnt to answer "be later." to everything: two real words earned the whole share
    assert tiny_score("be later.") < tiny_score("The cat learned to read.")
    assert tiny_score("This is very good.") > tiny_score("be later.") + 0.9
