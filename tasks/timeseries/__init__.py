"""Time-series forecasting, the worked example of a new modality (docs/new_modality.md)."""
from mambaseq.tasks.timeseries.forecasting import ForecastingDataModule, ForecastingTask

__all__ = ["ForecastingDataModule", "ForecastingTask"]
