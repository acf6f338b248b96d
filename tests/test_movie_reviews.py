import pytest

from benchmarks.streams.movie_reviews import load_reviews, seeded_reviews


def test_both_sources_load_with_balanced_labels():
    imdb = load_reviews("imdb")
    rt = load_reviews("rotten_tomatoes")
    assert len(imdb) == 25_000 and len(rt) == 8_530
    assert sum(r.label for r in imdb) == 12_500
    assert all("<br />" not in r.text for r in imdb[:500])
    assert len({r.id for r in imdb}) == len(imdb)


def test_seeded_order_is_stable_and_seed_dependent():
    a = [r.id for r in seeded_reviews("imdb", seed=0, limit=50)]
    assert a == [r.id for r in seeded_reviews("imdb", seed=0, limit=50)]
    assert a != [r.id for r in seeded_reviews("imdb", seed=1, limit=50)]
    assert 10 < sum(r.label for r in seeded_reviews("imdb", 0, 50)) < 40  # shuffled, not sorted


def test_unknown_source():
    with pytest.raises(ValueError, match="expected one of imdb, rotten_tomatoes"):
        load_reviews("yelp")
