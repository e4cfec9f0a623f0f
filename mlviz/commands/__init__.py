"""Click commands that live in their own modules; mlviz.cli registers them."""
