-- Run once, when the PostgreSQL volume is first created: the Optuna studies get their own
-- database (MLflow and Optuna each keep an alembic_version table).
CREATE DATABASE optuna;
