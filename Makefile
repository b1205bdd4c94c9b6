# vssm-pkcs11: the two commands of the README.
#   make demo   start a local key service, create keys, sign, verify with openssl
#   make check  install test dependencies, build, run every test (unit, mTLS, conformance)
SWIFT ?= swift
export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: demo check lint format build test conformance tsan clean module-release vssm-release release bench install uninstall deb

# Install locations (`make install PREFIX=/usr DESTDIR=/tmp/stage`). The module config is looked up
# in /etc/vssm whatever the prefix, hence SYSCONFDIR=/etc. p11-kit reads the modules of the
# distribution in /usr/share/p11-kit/modules and the administrator's in /etc/pkcs11/modules.
PREFIX ?= /usr/local
MULTIARCH ?= $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BINDIR ?= $(PREFIX)/bin
PKCS11DIR ?= $(PREFIX)/lib/$(MULTIARCH)/pkcs11
SYSCONFDIR ?= /etc
P11KITDIR ?= $(if $(filter /usr,$(PREFIX)),/usr/share/p11-kit/modules,$(SYSCONFDIR)/pkcs11/modules)
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR ?= $(PREFIX)/share/doc/vssm-pkcs11
INSTALLED = $(DESTDIR)$(PKCS11DIR)/libvssm-pkcs11.so $(DESTDIR)$(BINDIR)/vssm \
	$(DESTDIR)$(P11KITDIR)/vssm-pkcs11.module $(DESTDIR)$(SYSCONFDIR)/vssm/pkcs11.json.example \
	$(DESTDIR)$(UNITDIR)/vssm.service $(DESTDIR)$(DOCDIR)/README.md

demo:
	bash scripts/install-deps.sh demo
	$(MAKE) build
	bash conformance/demo.sh

build:
	$(SWIFT) build --product vssm
	$(SWIFT) build --product vssm-pkcs11

check:
	bash scripts/install-deps.sh
	$(MAKE) lint
	$(SWIFT) build --build-tests
	$(SWIFT) build --product vssm-pkcs11
	$(SWIFT) test --skip-build
	bash conformance/run-all.sh

test:
	$(SWIFT) test

# Style and build hygiene (part of `make check`): every import declared by its target, and the
# sources as swift-format (the toolchain's, configured by .swift-format) writes them.
lint:
	python3 scripts/check-imports.py
	swift-format lint --strict --parallel --recursive Sources Tests Package.swift

# Rewrites the sources as `make lint` expects them.
format:
	swift-format format --in-place --parallel --recursive Sources Tests Package.swift

conformance: build
	bash conformance/run-all.sh

# Thread sanitizer run of the server tests (separate build folder; slow).
tsan:
	$(SWIFT) test --sanitize=thread --scratch-path .build-tsan --filter VSSMServerTests

# C_Sign throughput/latency and cold path of the module vs SoftHSM2 (release builds; see bench/run.sh).
bench:
	bash bench/run.sh

# The release artifact: Swift runtime linked statically (no toolchain needed where it is used), stripped.
module-release:
	$(SWIFT) build -c release --product vssm-pkcs11 -Xswiftc -static-stdlib --scratch-path .build-release
	mkdir -p dist
	strip -R .comment -o dist/libvssm-pkcs11.so .build-release/release/libvssm-pkcs11.so
	@ls -l dist/libvssm-pkcs11.so

# The `vssm` binary, Swift runtime linked statically as well.
vssm-release:
	$(SWIFT) build -c release --product vssm -Xswiftc -static-stdlib --scratch-path .build-release
	mkdir -p dist
	strip -R .comment -o dist/vssm .build-release/release/vssm
	@ls -l dist/vssm

release: module-release vssm-release

# Debian packages from the release builds: dist/vssm_VERSION_ARCH.deb, dist/libvssm-pkcs11_VERSION_ARCH.deb
# (the version is Sources/VSSMWire/Version.swift's).
deb: release
	bash packaging/build-deb.sh

# Installs the release module and binary, the p11-kit module file, an example module config
# (never over a real one) and an example systemd unit; `make uninstall` with the same variables
# removes exactly these files.
install: release
	sed -e 's|@PKCS11DIR@|$(PKCS11DIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' packaging/vssm-pkcs11.module.in > dist/vssm-pkcs11.module
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' packaging/vssm.service.in > dist/vssm.service
	install -D -m 0755 dist/libvssm-pkcs11.so $(DESTDIR)$(PKCS11DIR)/libvssm-pkcs11.so
	install -D -m 0755 dist/vssm $(DESTDIR)$(BINDIR)/vssm
	install -D -m 0644 dist/vssm-pkcs11.module $(DESTDIR)$(P11KITDIR)/vssm-pkcs11.module
	install -D -m 0644 packaging/pkcs11.json.example $(DESTDIR)$(SYSCONFDIR)/vssm/pkcs11.json.example
	install -D -m 0644 dist/vssm.service $(DESTDIR)$(UNITDIR)/vssm.service
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -d $(DESTDIR)$(DOCDIR)/docs
	install -m 0644 docs/*.md $(DESTDIR)$(DOCDIR)/docs/
	@echo "installed: $(INSTALLED) and $(DESTDIR)$(DOCDIR)/docs/"

uninstall:
	rm -f $(INSTALLED) $(DESTDIR)$(DOCDIR)/docs/*.md
	rmdir $(DESTDIR)$(DOCDIR)/docs $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/vssm 2>/dev/null || true
	@echo "removed: $(INSTALLED) and $(DESTDIR)$(DOCDIR)/docs/ (a real $(SYSCONFDIR)/vssm/pkcs11.json is kept)"

clean:
	rm -rf .build .build-tsan .build-release dist
