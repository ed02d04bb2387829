# Cross-building for 64-bit ARM (arm64 gateways) with Debian's cross toolchain
# (crossbuild-essential-arm64) and the arm64 multiarch -dev packages
# (scripts/install-deps.sh arm64). `make arm64` uses it:
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# Tests run under qemu-user (the emulator below; `make test-arm64`).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(LS_CROSS_TRIPLET aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${LS_CROSS_TRIPLET}-gcc)
# ctest runs the unit tests and `luastream test` through it. The programs
# load the arm64 multiarch libc6:arm64 (/lib/ld-linux-aarch64.so.1), which the
# -dev:arm64 packages bring, like every other library; not `-L
# /usr/aarch64-linux-gnu`: with the cross toolchain's own libc,
# pthread_create never returns under Debian 12's qemu-user 7.2.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)

# Multiarch: headers in /usr/include, libraries and .pc files in
# /usr/lib/aarch64-linux-gnu. pkg-config must see only the arm64 ones.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${LS_CROSS_TRIPLET}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
set(CMAKE_FIND_ROOT_PATH /usr/${LS_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
