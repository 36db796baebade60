/* core_alone.c - links the whole core with nothing else (CMakeLists.txt,
 * resizer_core_alone): an undefined reference here is a core module
 * calling into handlers/ or main.c, which STYLE.md forbids. */
int main(void)
{
    return 0;
}
