"""From scored hypotheses to a result: the ranking of wordings, text backing, the distinct differences and the
co-varying signals set aside."""
