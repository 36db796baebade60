/* unittest.h - the one switch between the shipped core and the unit-test
 * core (as curl's UNITTEST): an internal step is declared UNITTEST, which
 * is static in the core the binary links and external in the core built
 * with RESIZER_UNITTEST for unit tests, fuzz targets and test drivers, so
 * they call the step directly. Its prototype lives in the module's
 * *_internal.h, under the same #ifdef. CMake defines RESIZER_UNITTEST on
 * the resizer_core_unit library only. */
#ifndef RESIZER_UNITTEST_H
#define RESIZER_UNITTEST_H

#ifdef RESIZER_UNITTEST
#define UNITTEST
#else
#define UNITTEST static
#endif

#endif
