# Debian packages of luastream for gateways (CPack's DEB generator), for the
# architecture being built: amd64 natively, arm64 with
# cmake/aarch64-linux-gnu.cmake. `make deb` builds both (docs/edge.md).
# Configure with -DCMAKE_INSTALL_PREFIX=/usr so that the paths built into the
# binary and written into the unit file are the package's.
#
# The package holds, besides the binary and the Lua modules installed by the
# main CMakeLists.txt: the examples, the systemd unit luastream@.service, the
# configuration directory /etc/luastream (conffiles) and the docs.

set(LS_SYSCONF_DIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/luastream")
set(LS_SYSTEMD_UNIT_DIR "lib/systemd/system") # under the prefix: /usr/lib/systemd/system

configure_file("${CMAKE_CURRENT_SOURCE_DIR}/packaging/luastream@.service.in"
  "${CMAKE_CURRENT_BINARY_DIR}/luastream@.service" @ONLY)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/luastream@.service" DESTINATION ${LS_SYSTEMD_UNIT_DIR})
install(FILES packaging/etc/README packaging/etc/example.env DESTINATION ${LS_SYSCONF_DIR})
file(GLOB LS_EXAMPLES CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/examples/*.lua")
install(FILES ${LS_EXAMPLES} DESTINATION ${CMAKE_INSTALL_DATADIR}/luastream/examples)
install(FILES README.md docs/edge.md docs/api.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME copyright)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64)$")
  set(LS_DEB_ARCH arm64)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(LS_DEB_ARCH amd64)
else()
  set(LS_DEB_ARCH "${CMAKE_SYSTEM_PROCESSOR}")
endif()

# The control files: conffiles (every file under /etc/luastream) and the
# maintainer scripts.
file(WRITE "${CMAKE_CURRENT_BINARY_DIR}/deb/conffiles"
  "${LS_SYSCONF_DIR}/README\n${LS_SYSCONF_DIR}/example.env\n")
foreach(script postinst postrm)
  file(COPY "${CMAKE_CURRENT_SOURCE_DIR}/packaging/debian/${script}" DESTINATION "${CMAKE_CURRENT_BINARY_DIR}/deb"
    FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
endforeach()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME luastream)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "The luastream authors <luastream@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "real-time stream processing in Lua on Kafka")
set(CPACK_PACKAGE_DESCRIPTION "A small C runtime (librdkafka, LMDB, LuaJIT) runs pipeline scripts
written in a dataframe API, with at-least-once or exactly-once delivery and local
state. Includes a systemd unit (luastream@NAME) for unattended gateways.")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE "${LS_DEB_ARCH}")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The shared libraries the binary links (Debian 12's), named by hand: the same
# list for every architecture, checked by scripts/test-deb.sh (a clean root with
# these alone runs the demo).
set(CPACK_DEBIAN_PACKAGE_DEPENDS
  "libc6 (>= 2.34), librdkafka1 (>= 2.0.2), libluajit-5.1-2 (>= 2.1.0~beta3), liblmdb0 (>= 0.9.14), libmsgpackc2 (>= 4.0.0), libmicrohttpd12 (>= 0.9.75)")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  "${CMAKE_CURRENT_BINARY_DIR}/deb/conffiles;${CMAKE_CURRENT_BINARY_DIR}/deb/postinst;${CMAKE_CURRENT_BINARY_DIR}/deb/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
