"""The results store: run and suite folders gathered into Parquet files that DuckDB
queries (layout.py says where everything goes). Writing: ingest.py (folders -> frames)
and write.py (files under the lock); `gpubench store ls | query`: inspect.py; reading it
where compare, history and report read folders: read.py."""
