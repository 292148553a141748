import pytest

from tlhelpers.course.recommend import decision_chart, recommend


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


@pytest.mark.parametrize(
    "images_per_class, distance, expected",
    [  # the region chapter 5's strategy map measured, and where its rules changed
        (100, "near", "linear probe"),  # was "last stage": the probe beat fine-tuning in every seed
        (50, "near", "linear probe"),
        (20, "far", "last stage"),  # was "full fine-tuning": partial was best on average
        (99, "far", "last stage"),
        (100, "far", "full fine-tuning"),  # full and partial tied at 100 per class
        (101, "near", "last stage"),  # beyond the map: the rule of thumb
    ],
)
def test_rules_follow_the_measured_map(images_per_class, distance, expected):
    assert expected in recommend(images_per_class, distance).name


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
    assert len(fig.axes[0].patches) == 2  # the measured region: near and far rows, 1-100 per class
    assert "measured" in fig.axes[0].get_xlabel()
