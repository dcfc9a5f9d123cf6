# cmake -DBUILD_DIR=<build tree> -DPREFIX=<dir> [-DCONFIG=<config>] -P install.cmake
# Installs the build tree into an emptied PREFIX, so that no file of an earlier install (say a
# header since removed) can make the find_package consumer pass.
file(REMOVE_RECURSE "${PREFIX}")
if(CONFIG)
  set(config_args --config "${CONFIG}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}"
                        ${config_args}
                COMMAND_ERROR_IS_FATAL ANY)
