"""The cascade's stream experiments: a stream, its levels, the answerer and the plots, put together."""
