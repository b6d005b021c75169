# The Debian package, from the install rules (cmake/Install.cmake) by CPack's DEB generator:
# `scripts/package` (cpack in the default build). CPack rather than debian/ + debhelper because
# it packages the very binaries the test suite ran, from the one list of installed files, with
# no second build; what debhelper would add (maintainer scripts for systemd, sysusers, tmpfiles)
# is in deploy/debian/, written the way its helpers write them.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME sysvisor)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "sysvisor developers <sysvisor@example.org>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # sysvisor_VERSION_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "seccomp user-notification syscall supervisor for containers")
set(CPACK_PACKAGE_DESCRIPTION
    "sysvisor serve, a root daemon, answers the system calls that containers'
seccomp filters trap (SECCOMP_RET_USER_NOTIF) according to declarative
YAML policies: it emulates them for the container (device nodes, image
mounts, trusted xattrs, scheduling, sysinfo), lets the kernel decide, fails
them with an errno or kills the caller, and audits any of these. runc, crun
and podman hand it their containers' listeners through the OCI
listenerPath; sysvisor-agent launches a workload or a minimal rootless
container under it.")
# The runtime libraries, from the binaries (dpkg-shlibdeps); the maintainer scripts use
# deb-systemd-helper and deb-systemd-invoke.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "init-system-helpers (>= 1.54~)")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "podman | runc | crun, uidmap")

# conffiles: everything under /etc, which the operator owns once installed.
set(sysvisor_conffiles "${SYSVISOR_CONFDIR}/sysvisor.yaml\n/etc/logrotate.d/sysvisor\n")
foreach(file IN LISTS sysvisor_policy_files)
  get_filename_component(name ${file} NAME)
  string(APPEND sysvisor_conffiles "${SYSVISOR_CONFDIR}/policies.d/${name}\n")
endforeach()
file(WRITE ${PROJECT_BINARY_DIR}/package/conffiles "${sysvisor_conffiles}")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_BINARY_DIR}/package/conffiles ${PROJECT_SOURCE_DIR}/deploy/debian/postinst
    ${PROJECT_SOURCE_DIR}/deploy/debian/prerm ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# A native package's changelog, as Debian policy wants it (gzip -n: no timestamp inside).
string(TIMESTAMP sysvisor_date "%a, %d %b %Y %H:%M:%S +0000" UTC)
file(READ ${PROJECT_SOURCE_DIR}/deploy/debian/changelog sysvisor_changelog)
string(REPLACE "@VERSION@" "${PROJECT_VERSION}" sysvisor_changelog "${sysvisor_changelog}")
string(REPLACE "@DATE@" "${sysvisor_date}" sysvisor_changelog "${sysvisor_changelog}")
file(WRITE ${PROJECT_BINARY_DIR}/package/changelog "${sysvisor_changelog}")
execute_process(COMMAND gzip -9n -c ${PROJECT_BINARY_DIR}/package/changelog
                OUTPUT_FILE ${PROJECT_BINARY_DIR}/package/changelog.gz COMMAND_ERROR_IS_FATAL ANY)
install(FILES ${PROJECT_BINARY_DIR}/package/changelog.gz DESTINATION ${CMAKE_INSTALL_DOCDIR})

include(CPack)
