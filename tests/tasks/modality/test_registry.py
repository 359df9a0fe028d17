"""Modality registry: registration by name, lookup errors listing the known names, duplicates refused."""
import pytest

from mambaseq.tasks.modality.registry import MODALITIES, get_modality, register_modality
from mambaseq.tasks.modality.task import ModalityTask
from mambaseq.tasks.timeseries.forecasting import ForecastingTask


@pytest.fixture
def clean_registry():
    before = dict(MODALITIES)
    yield
    MODALITIES.clear()
    MODALITIES.update(before)


def test_builtin_forecasting_is_registered():
    assert get_modality("timeseries_forecasting") is ForecastingTask


def test_register_and_get(clean_registry):
    @register_modality("toy_modality")
    class ToyTask(ModalityTask):
        pass

    assert get_modality("toy_modality") is ToyTask
    assert MODALITIES["toy_modality"] is ToyTask


def test_unknown_name_lists_known_modalities():
    with pytest.raises(KeyError, match=r"'no_such_modality' is not registered: known modalities are \[.*"
                                        r"'timeseries_forecasting'"):
        get_modality("no_such_modality")


def test_duplicate_name_is_refused(clean_registry):
    with pytest.raises(ValueError, match="'timeseries_forecasting' is already registered to "
                                         "mambaseq.tasks.timeseries.forecasting.ForecastingTask"):
        @register_modality("timeseries_forecasting")
        class OtherTask(ModalityTask):
            pass


def test_non_task_is_refused(clean_registry):
    with pytest.raises(TypeError, match="is not a SequenceTask subclass"):
        register_modality("not_a_task")(dict)
