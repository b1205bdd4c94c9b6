# vssm-pkcs11: the two commands of the README.
#   make demo   start a local key service, create keys, sign, verify with openssl
#   make check  install test dependencies, build, run every test (unit, mTLS, conformance)
SWIFT ?= swift
export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: demo check build test conformance tsan clean module-release bench

demo: build
	bash conformance/demo.sh

build:
	$(SWIFT) build --product vssm
	$(SWIFT) build --product vssm-pkcs11

check:
	bash scripts/install-deps.sh
	$(SWIFT) build --build-tests
	$(SWIFT) build --product vssm-pkcs11
	$(SWIFT) test --skip-build
	bash conformance/run-all.sh

test:
	$(SWIFT) test

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
	strip -o dist/libvssm-pkcs11.so .build-release/release/libvssm-pkcs11.so
	@ls -l dist/libvssm-pkcs11.so

clean:
	rm -rf .build .build-tsan .build-release dist
