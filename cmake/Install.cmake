# What `cmake --install` puts where, and so what the Debian package (cmake/Package.cmake) holds.
# Paths follow GNUInstallDirs under the prefix (/usr/local by hand, /usr in the package), except
# the configuration: the daemon reads /etc/sysvisor whatever its prefix, so that is where it goes.
include(GNUInstallDirs)

set(SYSVISOR_CONFDIR /etc/sysvisor)
# systemd, tmpfiles.d and sysusers.d read <prefix>/lib/... for /usr and /usr/local alike; not
# CMAKE_INSTALL_LIBDIR, which is lib/<multiarch> on Debian.
set(SYSVISOR_UNITDIR lib/systemd/system)

install(TARGETS sysvisor sysvisor-agent RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The shipped policies, as configuration the operator owns (conffiles in the package); their
# decision cases and OCI profiles, and the policy schema, as data.
file(GLOB sysvisor_policy_files CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/policies/*.yaml)
list(FILTER sysvisor_policy_files EXCLUDE REGEX "\\.cases\\.yaml$")
file(GLOB sysvisor_case_files CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/policies/*.cases.yaml)
file(GLOB sysvisor_oci_profiles CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/policies/oci/*.json)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/etc/sysvisor.yaml DESTINATION ${SYSVISOR_CONFDIR})
install(FILES ${sysvisor_policy_files} DESTINATION ${SYSVISOR_CONFDIR}/policies.d)
install(FILES ${PROJECT_SOURCE_DIR}/policies/schema.json DESTINATION ${CMAKE_INSTALL_DATADIR}/sysvisor)
install(FILES ${sysvisor_case_files} DESTINATION ${CMAKE_INSTALL_DATADIR}/sysvisor/cases)
install(FILES ${sysvisor_oci_profiles} DESTINATION ${CMAKE_INSTALL_DATADIR}/sysvisor/oci)

# systemd: the sockets as they are; the service with the paths of the prefix it is installed
# under, written at install time (CPack installs with its own prefix).
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/sysvisor.socket
              ${PROJECT_SOURCE_DIR}/deploy/systemd/sysvisor-control.socket
        DESTINATION ${SYSVISOR_UNITDIR})
install(CODE "
  set(SYSVISOR_BINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
  set(SYSVISOR_DOCDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DOCDIR}\")
  configure_file(\"${PROJECT_SOURCE_DIR}/deploy/systemd/sysvisor.service.in\"
                 \"${PROJECT_BINARY_DIR}/install/sysvisor.service\" @ONLY)
")
install(FILES ${PROJECT_BINARY_DIR}/install/sysvisor.service DESTINATION ${SYSVISOR_UNITDIR})
install(FILES ${PROJECT_SOURCE_DIR}/deploy/tmpfiles.conf DESTINATION lib/tmpfiles.d RENAME sysvisor.conf)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/sysusers.conf DESTINATION lib/sysusers.d RENAME sysvisor.conf)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/logrotate DESTINATION /etc/logrotate.d RENAME sysvisor)

# Documentation (the units' Documentation= points here).
file(GLOB sysvisor_docs CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${sysvisor_docs} DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/deploy/debian/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR})

# Manual pages, made from the programs' own --help and --version by help2man at build time, so
# they cannot drift from the code.
find_program(SYSVISOR_HELP2MAN help2man)
if(SYSVISOR_HELP2MAN)
  set(sysvisor_man_dir ${PROJECT_BINARY_DIR}/man)
  add_custom_command(
    OUTPUT ${sysvisor_man_dir}/sysvisor.8.gz
    COMMAND ${CMAKE_COMMAND} -E make_directory ${sysvisor_man_dir}
    COMMAND ${SYSVISOR_HELP2MAN} --no-info --no-discard-stderr --section 8
            --name "seccomp user-notification syscall supervisor for containers"
            --output ${sysvisor_man_dir}/sysvisor.8 $<TARGET_FILE:sysvisor>
    COMMAND gzip -9nf ${sysvisor_man_dir}/sysvisor.8
    DEPENDS sysvisor
    VERBATIM)
  add_custom_command(
    OUTPUT ${sysvisor_man_dir}/sysvisor-agent.1.gz
    COMMAND ${CMAKE_COMMAND} -E make_directory ${sysvisor_man_dir}
    COMMAND ${SYSVISOR_HELP2MAN} --no-info --no-discard-stderr --section 1
            --name "run a workload or a rootless container under sysvisor's supervision"
            --output ${sysvisor_man_dir}/sysvisor-agent.1 $<TARGET_FILE:sysvisor-agent>
    COMMAND gzip -9nf ${sysvisor_man_dir}/sysvisor-agent.1
    DEPENDS sysvisor-agent
    VERBATIM)
  add_custom_target(man ALL DEPENDS ${sysvisor_man_dir}/sysvisor.8.gz ${sysvisor_man_dir}/sysvisor-agent.1.gz)
  install(FILES ${sysvisor_man_dir}/sysvisor.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
  install(FILES ${sysvisor_man_dir}/sysvisor-agent.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(WARNING "help2man not found (scripts/install-deps installs it): no manual pages")
endif()
