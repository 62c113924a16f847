# miffy — shadow testing inside HAProxy.
#   make            build build/miffy and its helper programs
#   make test       install missing deps, build with ASan+UBSan, run unit and integration tests
#   make test-haproxy  the integration tests that start or check HAProxy, against the
#                   ASan+UBSan build, on Debian's HAProxy 3.0 then 3.2 (chroots that
#                   tools/haproxy-root.sh builds once into $MIFFY_ROOTS; needs root).
#                   make test covers the machine's own HAProxy (2.6 on Debian 12);
#                   MIFFY_HAPROXY=system|3.0|3.2 picks the one any test run uses
#   make demo       install the build group, build, run the local demo (see README)
#   make deps       install the Debian packages, one line per group (tools/deps.sh:
#                   build, test, browser, docker; DEPS_GROUPS picks them)
#   make test-docker  build the Dockerfile and run the image and docker-compose.yml
#                   for real (tools/docker-test.sh; needs root, starts dockerd)
#   make test-fresh the README's commands in a clean Debian 12 root
#                   (tools/fresh-machine.sh; needs root)
#   make fuzz       run each libFuzzer target for FUZZ_SECONDS
#   make install    PREFIX=/usr/local DESTDIR=

CC       ?= gcc
BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
SANITIZE ?=
VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

PKGS     := libcurl rdkafka libcjson libconfuse libmicrohttpd zlib
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wcast-qual -Wwrite-strings -Wformat=2 -Wundef \
            -Wvla -Wno-unused-parameter
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 $(WARN) -D_GNU_SOURCE -DMIFFY_VERSION='"$(VERSION)"'
ifneq ($(CI),)
CFLAGS   += -Werror
endif
ifneq ($(SANITIZE),)
CFLAGS   += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=$(SANITIZE)
endif
# Evaluated when a recipe first uses them, then kept: `make demo` and `make
# test` install the libraries (make deps) before anything is compiled, and a
# value taken when make started would be empty on a fresh machine.
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $(PKGS) 2>/dev/null))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $$(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev -lm -lpthread)$(PKG_LIBS)

SRCS      := $(wildcard spoa/*.c)
LIB_SRCS  := $(filter-out spoa/main.c,$(SRCS))
LIB_OBJS  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
# The dashboard's files, embedded in the binary (spoa/assets.h).
ASSET_FILES := $(sort $(wildcard dashboard/*.html dashboard/*.js dashboard/*.css))
ASSET_OBJ := $(BUILD)/obj/gen/assets.o
LIB_OBJS  += $(ASSET_OBJ)
MAIN_OBJ  := $(BUILD)/obj/spoa/main.o
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
DEMO_SRCS := $(wildcard demo/*.c)
TOOL_SRCS := $(wildcard tools/*.c)
TOOL_BINS := $(patsubst tools/%.c,$(BUILD)/miffy-%,$(TOOL_SRCS))
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))
PROGS     := $(BUILD)/miffy $(if $(DEMO_SRCS),$(BUILD)/miffy-demo) $(TOOL_BINS)

PYTHON    ?= /usr/bin/python3
PYTEST_ARGS ?=
# test_docker.py needs a docker engine and the image: make test-docker runs it.
INTEGRATION_TESTS ?= tests/integration --ignore=tests/integration/test_docker.py
# The HAProxy the integration tests run: system (the default), 3.0 or 3.2.
MIFFY_HAPROXY ?=
HAPROXY_VERSIONS ?= 3.0 3.2
# make test-haproxy: every integration test that starts or checks HAProxy
# (pytest --haproxy-only finds them: today in test_agent, test_faults,
# test_replay, test_compare_e2e, test_publish, test_admin and test_fleet), the demo and
# packaging ones aside.
HAPROXY_TESTS := tests/integration $(addprefix --ignore=tests/integration/,test_demo_smoke.py \
                 test_demo_servers.py test_packaging.py test_docker.py)

.PHONY: all deps test test-haproxy test-docker test-fresh check-includes unit integration demo install fuzz fuzz-smoke bench clean FORCE

# Objects are intermediate files of the programs: keep them (make would
# otherwise delete build/obj/tools/mock-kafka.o after each link, and relink).
.SECONDARY:

all: $(PROGS)

# Objects depend on the flags they were built with, so switching between a
# sanitizer build (make test) and a plain one rebuilds everything.
# DEPS_FORMAT changes when the dependency files do, to rebuild old trees.
DEPS_FORMAT := 2
# Before the first compile: the libraries are there, or one line says what to run.
$(BUILD)/.flags: FORCE
	@command -v pkg-config >/dev/null 2>&1 || { echo "miffy: pkg-config is missing: run 'make deps' (or 'make demo', which installs what it needs)" >&2; exit 1; }
	@missing=""; for p in $(PKGS); do pkg-config --exists $$p || missing="$$missing $$p"; done; \
	  printf '#include <ev.h>\n' | $(CC) -E -x c - >/dev/null 2>&1 || missing="$$missing libev"; \
	  [ -z "$$missing" ] || { echo "miffy: libraries missing:$$missing: run 'make deps' (or 'make demo', which installs what it needs)" >&2; exit 1; }
	@mkdir -p $(BUILD)
	@echo '$(CC) $(CFLAGS) $(LDFLAGS) deps-$(DEPS_FORMAT)' | cmp -s - $@ || \
	  echo '$(CC) $(CFLAGS) $(LDFLAGS) deps-$(DEPS_FORMAT)' > $@

# The dependency file names the object both relative and absolute: a build
# directory reached both ways (BUILD=build, BUILD=$$PWD/build) must still see
# header changes.
$(BUILD)/obj/%.o: %.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Ispoa -MMD -MP -MT $(abspath $@) \
	  -MT $(patsubst $(CURDIR)/%,%,$(abspath $@)) -c $< -o $@

$(BUILD)/gen/assets.c: tools/embed-assets.sh $(ASSET_FILES)
	@mkdir -p $(dir $@)
	sh tools/embed-assets.sh $@ $(ASSET_FILES)

$(ASSET_OBJ): $(BUILD)/gen/assets.c spoa/assets.h $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ispoa -c $< -o $@

$(BUILD)/libmiffy.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/miffy: $(MAIN_OBJ) $(BUILD)/libmiffy.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/miffy-demo: $(patsubst %.c,$(BUILD)/obj/%.o,$(DEMO_SRCS)) $(BUILD)/libmiffy.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/miffy-%: $(BUILD)/obj/tools/%.o $(BUILD)/libmiffy.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/libmiffy.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lcmocka

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BUILD)/libmiffy.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

DEPS_GROUPS ?=
deps:
	@sh tools/deps.sh $(DEPS_GROUPS)

# The README's test command.
test:
	@sh tools/deps.sh build test browser
	$(MAKE) SANITIZE=address,undefined all unit-bins
	$(MAKE) -k SANITIZE=address,undefined check-includes unit integration fuzz-smoke

# Types headers (NAME-t.h) hold only types; no include cycle between modules.
check-includes:
	@$(PYTHON) tools/check-includes.py spoa

unit-bins: $(UNIT_BINS)

unit: $(UNIT_BINS)
	@failed=""; for t in $(UNIT_BINS); do echo "== $$t"; $$t || failed="$$failed $$t"; done; \
	if [ -n "$$failed" ]; then echo "unit tests failed:$$failed"; exit 1; fi

integration: all
	MIFFY_BUILD=$(abspath $(BUILD)) MIFFY_HAPROXY=$(MIFFY_HAPROXY) \
	  $(PYTHON) -m pytest -q $(INTEGRATION_TESTS) $(PYTEST_ARGS)

# Each version is run even when an earlier one failed; the status says which.
test-haproxy:
	@sh tools/deps.sh build test
	@for v in $(HAPROXY_VERSIONS); do sh tools/haproxy-root.sh $$v >/dev/null || exit 1; done
	$(MAKE) SANITIZE=address,undefined all
	@failed=""; for v in $(HAPROXY_VERSIONS); do \
	  echo "== HAProxy $$v"; t0=$$(date +%s); \
	  $(MAKE) --no-print-directory SANITIZE=address,undefined integration MIFFY_HAPROXY=$$v \
	    INTEGRATION_TESTS="$(HAPROXY_TESTS)" PYTEST_ARGS="--haproxy-only $(PYTEST_ARGS)" \
	    || failed="$$failed $$v"; \
	  echo "== HAProxy $$v: $$(( $$(date +%s) - t0 )) s"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-haproxy failed on HAProxy$$failed"; exit 1; fi

bench-bins: $(BENCH_BINS)

# Only the build group: the demo needs no test, browser or docker package.
demo:
	@sh tools/deps.sh build
	@$(MAKE) --no-print-directory all
	@bash demo/run

test-docker:
	@sh tools/deps.sh build test docker
	@$(MAKE) --no-print-directory all
	@bash tools/docker-test.sh

test-fresh:
	@sh tools/deps.sh docker
	@bash tools/fresh-machine.sh

fuzz fuzz-smoke:
	@$(MAKE) -f fuzz/Makefile $@

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/etc/miffy $(DESTDIR)$(PREFIX)/share/miffy/haproxy
	install -m 0755 $(BUILD)/miffy $(DESTDIR)$(PREFIX)/bin/miffy
	install -m 0644 conf/miffy.conf $(DESTDIR)$(PREFIX)/etc/miffy/miffy.conf
	install -m 0644 haproxy/miffy-spoe.conf $(DESTDIR)$(PREFIX)/share/miffy/haproxy/
	sed 's|config haproxy/miffy-spoe.conf|config $(PREFIX)/share/miffy/haproxy/miffy-spoe.conf|' haproxy/haproxy.cfg \
	  > $(DESTDIR)$(PREFIX)/share/miffy/haproxy/haproxy.cfg
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	for unit in miffy.service miffy@.service; do \
	  sed 's|@PREFIX@|$(PREFIX)|g' packaging/$$unit > $(DESTDIR)$(PREFIX)/lib/systemd/system/$$unit || exit 1; done

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
