"""Feature definitions as relational expressions (Ibis), run on DuckDB, compiled for Spark and warehouses.

Where things live:
- features/catalogue.py: every feature's name, meaning, reason template and (`define=`) its
  relational definition, one entry per feature;
- features/relational/definitions.py: the kinds of definition (`Reduction`, `Derived`) and the
  shared ones (counts, sums, days since, ratios);
- features/relational/<family>.py: a family's own definitions (e.g. rfm.py: trends, outflows, scores);
- features/relational/engine.py: the rows each family aggregates, the population and the labels,
  and the query that puts every family together for many cutoffs at once;
- features/relational/outcomes.py: past contacts' repurchase and satisfaction over their label window
  (`churn effects`, on every engine);
- pipelines/relational.py: the DuckDB connection (threads, memory limit) and reading the files.
"""
