# The fake Spack's concretizer and store, in awk (see ./spack, which calls it). It answers
# as Spack 0.23 does (tests/data/spack-0.23/ holds the real output it imitates):
#
#   mode=spec  SPEC=...   `spack spec --json SPEC`: the concrete DAG, root first, then the
#                         other nodes by name, one node per line; or Spack's error for an
#                         unknown package or an unsatisfiable version (exit 1)
#   mode=find             `spack find --json`: the installed specs of the store
#   mode=order FILE       the nodes of a concrete spec FILE, dependencies first, as
#                         "name version hash" lines (what `spack install -f FILE` builds)
#
# Packages come from a repo file (REPO, one package a line: `NAME VERSION [DEP...]`, `#`
# comments); without one, every name is a package at version 1.0 with no dependencies,
# and names starting with "nosuch" are unknown. A DAG hash is 32 base-32 characters made
# from the node's name, version, the root's variants and its dependencies' hashes, so the
# same request spelled differently (`hdf5+mpi`, `hdf5 +mpi ^zlib`) gets the same hash.
# The store (STORE) holds "HASH NAME VERSION" lines of what is installed.

function h32(s,    i, a, b, out, k) {
  a = 5381; b = 7
  for (i = 1; i <= length(s); i++) {
    a = (a * 33 + ORD[substr(s, i, 1)]) % 2147483647
    b = (b * 131 + ORD[substr(s, i, 1)]) % 2147483629
  }
  out = ""
  for (k = 0; k < 32; k++) {
    a = (a * 48271 + b) % 2147483647
    out = out substr("abcdefghijklmnopqrstuvwxyz234567", int(a / 7) % 32 + 1, 1)
  }
  return out
}

function load_repo(    line, f, n, i) {
  if (REPO == "") return
  while ((getline line < REPO) > 0) {
    sub(/#.*/, "", line)
    n = split(line, f, " ")
    if (n < 2) continue
    VERSION[f[1]] = f[2]
    DEPS[f[1]] = ""
    for (i = 3; i <= n; i++) DEPS[f[1]] = DEPS[f[1]] (i > 3 ? " " : "") f[i]
  }
  close(REPO)
}

function known(name) {
  if (REPO == "") return name !~ /^nosuch/
  return name in VERSION
}

function version_of(name) {
  return (REPO == "") ? "1.0" : VERSION[name]
}

# The hash of NAME (and of everything below it), memoised in HASH[].
function hash_of(name, variants,    n, d, i, s) {
  if (name in HASH) return HASH[name]
  s = name "@" version_of(name) " " variants
  n = split(DEPS[name], d, " ")
  for (i = 1; i <= n; i++) s = s " ^" hash_of(d[i], "")
  HASH[name] = h32(s)
  return HASH[name]
}

function node_json(name, variants,    n, d, i, out, v, kv, nv) {
  out = "{\"name\":\"" name "\",\"version\":\"" version_of(name) "\","
  out = out "\"arch\":{\"platform\":\"linux\",\"platform_os\":\"debian12\",\"target\":\"x86_64\"},"
  out = out "\"compiler\":{\"name\":\"gcc\",\"version\":\"12.2.0\"},\"namespace\":\"builtin\","
  out = out "\"parameters\":{"
  nv = split(variants, v, " ")
  for (i = 1; i <= nv; i++) {
    if (v[i] ~ /^\+/) out = out "\"" substr(v[i], 2) "\":true,"
    else if (v[i] ~ /^~/) out = out "\"" substr(v[i], 2) "\":false,"
    else { split(v[i], kv, "="); out = out "\"" kv[1] "\":[\"" kv[2] "\"]," }
  }
  out = out "\"cflags\":[],\"cppflags\":[],\"cxxflags\":[],\"fflags\":[],\"ldflags\":[],\"ldlibs\":[]},"
  out = out "\"dependencies\":["
  n = split(DEPS[name], d, " ")
  for (i = 1; i <= n; i++) {
    out = out (i > 1 ? "," : "") "{\"name\":\"" d[i] "\",\"hash\":\"" HASH[d[i]] "\","
    out = out "\"parameters\":{\"deptypes\":[\"build\",\"link\"],\"virtuals\":[]}}"
  }
  return out "],\"hash\":\"" HASH[name] "\"}"
}

function collect(name,    n, d, i) {
  if (name in SEEN) return
  SEEN[name] = 1
  n = split(DEPS[name], d, " ")
  for (i = 1; i <= n; i++) collect(d[i])
}

# Sort the words of s (insertion sort: the lists are short).
function sorted(s,    a, n, i, j, t, out) {
  n = split(s, a, " ")
  for (i = 2; i <= n; i++) {
    t = a[i]
    for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
    a[j + 1] = t
  }
  out = ""
  for (i = 1; i <= n; i++) out = out (i > 1 ? " " : "") a[i]
  return out
}

function spec(text,    root, name, want, variants, rest, m, others, n, o, i, line) {
  root = text
  sub(/\^.*/, "", root)
  name = root
  sub(/^[a-z0-9_.-]*\./, "", name)       # a namespace
  match(name, /^[a-z0-9_-]+/)
  name = substr(name, RSTART, RLENGTH)
  if (!known(name)) {
    print "==> Error: Package 'spack.pkg.builtin." name "' not found." > "/dev/stderr"
    print "Use 'spack create' to create a new package." > "/dev/stderr"
    exit 1
  }
  want = ""
  if (match(root, /@=?[0-9A-Za-z._-]+/)) want = substr(root, RSTART, RLENGTH)
  sub(/^@=?/, "", want)
  if (want != "" && version_of(name) != want && index(version_of(name), want ".") != 1) {
    print "==> Error: concretization failed for the following reasons:\n" > "/dev/stderr"
    print "   1. Cannot satisfy '" name "@" want "'" > "/dev/stderr"
    print "   2. Cannot satisfy '" name "@" want "'" > "/dev/stderr"
    print "        required because " name "@" want " requested explicitly " > "/dev/stderr"
    exit 1
  }
  variants = ""
  rest = root
  gsub(/[+~] +/, "&", rest)
  while (match(rest, /[+~][a-z_][a-z0-9_]*|[a-z_][a-z0-9_]*=[^ ]+/)) {
    m = substr(rest, RSTART, RLENGTH)
    if (m !~ /^(arch|target|os|platform|namespace)=/) variants = variants " " m
    rest = substr(rest, RSTART + RLENGTH)
  }
  variants = sorted(variants)
  collect(name)
  for (n in SEEN) hash_of(n, n == name ? variants : "")
  others = ""
  for (n in SEEN) if (n != name) others = others " " n
  others = sorted(others)
  print "{\"spec\":{\"_meta\":{\"version\":4},\"nodes\":["
  line = node_json(name, variants)
  n = split(others, o, " ")
  for (i = 1; i <= n; i++) { print line ","; line = node_json(o[i], "") }
  print line
  print "]}}"
}

function find(    line, f, first) {
  printf "["
  first = 1
  if (STORE != "") {
    while ((getline line < STORE) > 0) {
      if (split(line, f, " ") < 3) continue
      printf "%s{\"name\":\"%s\",\"version\":\"%s\",\"namespace\":\"builtin\",\"hash\":\"%s\"}", (first ? "" : ","), f[2], f[3], f[1]
      first = 0
    }
  }
  print "]"
}

function visit(h,    n, d, i) {
  if (h in DONE) return
  DONE[h] = 1
  n = split(NDEPS[h], d, " ")
  for (i = 1; i <= n; i++) visit(d[i])
  print NNAME[h], NVER[h], h
}

function order(file,    line, name, ver, h, rest, count, i, hs) {
  count = 0
  while ((getline line < file) > 0) {
    if (line !~ /^\{"name":"/) continue
    match(line, /^\{"name":"[^"]*"/); name = substr(line, 10, RLENGTH - 10)
    match(line, /"version":"[^"]*"/); ver = substr(line, RSTART + 11, RLENGTH - 12)
    match(line, /"hash":"[a-z2-7]*"\},?$/); h = substr(line, RSTART + 8, 32)
    NNAME[h] = name; NVER[h] = ver; NDEPS[h] = ""
    rest = substr(line, 1, RSTART - 1)
    while (match(rest, /"hash":"[a-z2-7]+"/)) {
      NDEPS[h] = NDEPS[h] " " substr(rest, RSTART + 8, RLENGTH - 9)
      rest = substr(rest, RSTART + RLENGTH)
    }
    hs[++count] = h
  }
  close(file)
  if (count == 0) {
    print "==> Error: " file " is not a concrete spec" > "/dev/stderr"
    exit 1
  }
  for (i = 1; i <= count; i++) visit(hs[i])
}

BEGIN {
  for (i = 32; i < 127; i++) ORD[sprintf("%c", i)] = i
  load_repo()
  if (mode == "spec") spec(SPEC)
  else if (mode == "find") find()
  else if (mode == "order") order(FILE)
  else { print "concretize.awk: unknown mode " mode > "/dev/stderr"; exit 2 }
}
