# Turns a file into a C array so the binary serves it without reading the
# disk: cmake -DIN=file -DOUT=dir -DNAME=symbol -P embed.cmake
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUT}/${NAME}_embed.h
  "/* Generated from ${IN}; do not edit. */\n#include <stddef.h>\nextern const unsigned char ${NAME}[];\nextern const size_t ${NAME}_len;\n")
file(WRITE ${OUT}/${NAME}_embed.c
  "/* Generated from ${IN}; do not edit. */\n#include <stddef.h>\nconst unsigned char ${NAME}[] = {${bytes}0};\nconst size_t ${NAME}_len = ${len};\n")
