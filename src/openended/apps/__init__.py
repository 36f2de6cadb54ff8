"""Applications built on the core: the CLI, reports, the ranking app, training loops,
exports, experiments. They import the core (`openended.api`, `openended.run_dir` and the
packages under them); nothing in the core imports them."""
