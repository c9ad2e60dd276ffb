"""The job engine: each uploaded program runs as a Prefect flow run of the runner flow."""
