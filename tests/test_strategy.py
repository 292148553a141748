import pytest

from tlhelpers.strategy import decision_chart, recommend


@pytest.mark.parametrize(
    "kwargs, chapter",
    [
        ({"images_per_class": 1000, "target_labelled": False}, "3"),
        ({"images_per_class": 3}, "4"),
        ({"images_per_class": 20, "domain_distance": "near"}, "2"),
        ({"images_per_class": 5000, "compute": "low"}, "2"),
        ({"images_per_class": 200, "domain_distance": "medium"}, "1"),
        ({"images_per_class": 200, "domain_distance": "far"}, "1"),
    ],
)
def test_recommendations_follow_the_chapters(kwargs, chapter):
    assert recommend(**kwargs).chapter == chapter


def test_far_domain_or_lots_of_data_means_full_finetuning():
    assert "full fine-tuning" in recommend(200, "far").name
    assert "full fine-tuning" in recommend(5000, "near", compute="high").name
    assert "last stage" in recommend(200, "near").name


def test_bad_input():
    with pytest.raises(ValueError, match="near, medium, far"):
        recommend(10, "close")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compute"):
        recommend(10, compute="huge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        recommend(-1)


def test_chart_shows_every_region():
    fig = decision_chart()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(labels) == 4 and any("few-shot" in t for t in labels)
