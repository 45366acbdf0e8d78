"""Selection strategies. Import `registry` for names; implementations are loaded on demand."""
