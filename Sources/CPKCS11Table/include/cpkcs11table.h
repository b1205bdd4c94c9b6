/* The constant PKCS#11 function tables live in table.c; this target has no API of its own. */
#ifndef CPKCS11TABLE_H
#define CPKCS11TABLE_H
#include "cpkcs11.h"
#endif
