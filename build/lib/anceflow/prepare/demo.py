"""Deterministic synthetic retrieval data set: the workflow's default demo.

``generate_demo(out_dir)`` writes a small collection with train and dev queries in
the project's "local" MS MARCO TSV layout::

    collection.tsv                      pid<TAB>text
    queries.train.tsv, queries.dev.tsv  qid<TAB>text
    qrels.train.tsv, qrels.dev.tsv      qid<TAB>0<TAB>pid<TAB>1

Design goal
-----------
The demo exists to show, in minutes on a laptop, that a trained dense retriever
beats BM25.  So relevance must be *learnable* from meaning, while *literal term
match* must be an unreliable signal:

* The vocabulary is a list of **concepts**, each with 2-3 interchangeable surface
  forms (synonyms).  About 200 are real English synonym groups (car / automobile /
  vehicle, doctor / physician / medic, ...) that a pretrained encoder already
  half-knows; the rest are pseudo-word groups built from syllables (``bakoru`` /
  ``tesifa``) whose equivalence can only be learned from the training queries.
* A **passage** is 15-40 lowercase words: 4-7 concepts, each written once with a
  randomly chosen form, scattered among function/filler words.
* A **query** (4-8 words) targets one passage.  It names 3-5 of that passage's
  concepts; one or two of them keep the passage's form and the rest (about 60%
  of the concept words) use a *different* synonym.  So the target shares only
  one or two literal words with its query, while dozens of other passages happen
  to use the query's other forms: BM25 is misled (dev MRR@10 around 0.5), yet a
  model that maps each form to its concept finds the target (a BM25 over
  concept ids scores about 1.0).
* Relevance is well defined: the set of concepts a query names is contained in
  its relevant passage(s) and in no other passage.
* About one query in ten also has a second relevant passage, a near-duplicate of
  its target (same concepts, freshly drawn forms and filler), so consumers must
  handle several positives per query, as in real MS MARCO-style qrels.
* Train and dev queries target disjoint passages, but the synonym groups are the
  same everywhere, so what a model learns on train transfers to dev.

Everything random comes from one ``random.Random(seed)``: no global state, no
numpy, no hash-order dependence, so one seed gives byte-identical files on any
machine and Python >= 3.10.  The vocabulary itself does not depend on the seed
(``CONCEPTS``; ``concept_of()`` maps a word to its concept, which tests use to
build a synonym-aware "oracle" BM25).
"""

from __future__ import annotations

import random
from pathlib import Path

__all__ = ["CONCEPTS", "FILLER_WORDS", "QUERY_WORDS", "concept_of", "generate_demo"]

# --------------------------------------------------------------------------- vocabulary

# Real English synonym groups.  Rules that keep the demo honest: a word belongs to
# one group only; no word is a Lucene/Porter stopword; and no two groups contain
# words that stem to the same root (e.g. "collect"/"collection"), because the
# workflow's BM25 stems and would otherwise merge two concepts.
_REAL_GROUPS: tuple[tuple[str, ...], ...] = (
    ("car", "automobile", "vehicle"),
    ("big", "large", "huge"),
    ("small", "tiny", "little"),
    ("doctor", "physician", "healer"),
    ("fast", "quick", "rapid"),
    ("begin", "start", "commence"),
    ("end", "finish", "conclude"),
    ("buy", "purchase", "acquire"),
    ("house", "home", "dwelling"),
    ("child", "kid", "youngster"),
    ("happy", "glad", "cheerful"),
    ("sad", "unhappy", "sorrowful"),
    ("smart", "clever", "intelligent"),
    ("stupid", "foolish", "dumb"),
    ("rich", "wealthy", "affluent"),
    ("poor", "needy", "impoverished"),
    ("old", "ancient", "elderly"),
    ("new", "fresh", "novel"),
    ("angry", "furious", "irate"),
    ("tired", "exhausted", "weary"),
    ("help", "assist", "aid"),
    ("show", "display", "exhibit"),
    ("answer", "reply", "response"),
    ("ask", "inquire"),
    ("choose", "select", "pick"),
    ("need", "require"),
    ("try", "attempt", "endeavor"),
    ("get", "obtain"),
    ("give", "provide", "supply"),
    ("keep", "retain", "preserve"),
    ("use", "utilize", "employ"),
    ("make", "create", "produce"),
    ("fix", "repair", "mend"),
    ("build", "construct", "erect"),
    ("break", "shatter", "smash"),
    ("destroy", "demolish", "wreck"),
    ("hide", "conceal"),
    ("look", "gaze", "stare"),
    ("talk", "speak", "converse"),
    ("say", "declare", "proclaim"),
    ("shout", "yell", "scream"),
    ("walk", "stroll", "stride"),
    ("run", "sprint", "dash"),
    ("jump", "leap", "hop"),
    ("sleep", "slumber", "doze"),
    ("eat", "consume", "devour"),
    ("hurt", "injure", "harm"),
    ("cry", "weep", "sob"),
    ("laugh", "chuckle", "giggle"),
    ("smile", "grin"),
    ("throw", "toss", "hurl"),
    ("pull", "tug", "drag"),
    ("push", "shove"),
    ("shut", "close", "seal"),
    ("cut", "slice", "chop"),
    ("law", "statute", "ordinance"),
    ("job", "occupation", "career"),
    ("work", "labor", "toil"),
    ("money", "cash", "currency"),
    ("price", "cost", "fee"),
    ("gift", "present", "donation"),
    ("story", "tale", "narrative"),
    ("picture", "image", "photo"),
    ("film", "movie", "cinema"),
    ("song", "tune", "melody"),
    ("street", "road", "avenue"),
    ("city", "metropolis"),
    ("shop", "store", "boutique"),
    ("trip", "journey", "voyage"),
    ("error", "mistake", "fault"),
    ("problem", "issue", "difficulty"),
    ("idea", "notion", "concept"),
    ("goal", "aim", "objective"),
    ("result", "outcome", "consequence"),
    ("reason", "cause", "motive"),
    ("method", "technique", "approach"),
    ("plan", "scheme", "strategy"),
    ("part", "piece", "portion"),
    ("center", "middle", "core"),
    ("edge", "border", "rim"),
    ("top", "summit", "apex"),
    ("area", "region", "zone"),
    ("soil", "earth", "dirt"),
    ("sea", "ocean"),
    ("river", "stream", "creek"),
    ("hill", "mound", "knoll"),
    ("forest", "woodland", "grove"),
    ("rock", "stone", "boulder"),
    ("storm", "tempest", "gale"),
    ("rain", "shower", "drizzle"),
    ("fire", "flame", "blaze"),
    ("dark", "dim", "gloomy"),
    ("bright", "shiny", "brilliant"),
    ("cold", "chilly", "freezing"),
    ("hot", "scorching", "boiling"),
    ("wet", "damp", "moist"),
    ("dry", "arid"),
    ("quiet", "silent", "hushed"),
    ("loud", "noisy", "deafening"),
    ("clean", "spotless", "tidy"),
    ("dirty", "filthy", "grimy"),
    ("strong", "powerful", "mighty"),
    ("weak", "feeble", "frail"),
    ("brave", "courageous", "fearless"),
    ("afraid", "scared", "frightened"),
    ("calm", "peaceful", "tranquil"),
    ("beautiful", "pretty", "gorgeous"),
    ("ugly", "hideous", "unsightly"),
    ("strange", "odd", "weird"),
    ("common", "ordinary", "typical"),
    ("rare", "scarce", "uncommon"),
    ("easy", "simple", "effortless"),
    ("hard", "difficult", "tough"),
    ("correct", "right", "accurate"),
    ("wrong", "incorrect", "false"),
    ("real", "genuine", "authentic"),
    ("fake", "counterfeit", "bogus"),
    ("safe", "secure", "protected"),
    ("risky", "hazardous", "treacherous"),
    ("important", "crucial", "essential"),
    ("famous", "renowned", "celebrated"),
    ("friend", "pal", "buddy"),
    ("enemy", "foe", "adversary"),
    ("teacher", "instructor", "tutor"),
    ("student", "pupil", "learner"),
    ("boss", "manager", "supervisor"),
    ("worker", "employee", "staff"),
    ("lawyer", "attorney", "counsel"),
    ("sailor", "mariner", "seaman"),
    ("soldier", "trooper", "warrior"),
    ("king", "monarch", "sovereign"),
    ("thief", "robber", "burglar"),
    ("baby", "infant", "newborn"),
    ("man", "gentleman", "fellow"),
    ("woman", "lady"),
    ("dog", "puppy", "hound"),
    ("cat", "kitten", "feline"),
    ("horse", "steed"),
    ("insect", "bug"),
    ("stomach", "belly", "tummy"),
    ("ill", "sick", "unwell"),
    ("medicine", "medication", "drug"),
    ("hospital", "clinic", "infirmary"),
    ("disease", "ailment", "malady"),
    ("pain", "ache", "agony"),
    ("food", "nourishment", "fare"),
    ("clothes", "garments", "attire"),
    ("hat", "cap", "bonnet"),
    ("bag", "sack", "pouch"),
    ("box", "crate", "carton"),
    ("cup", "mug"),
    ("chair", "seat", "stool"),
    ("couch", "sofa", "settee"),
    ("bed", "cot", "bunk"),
    ("door", "portal"),
    ("ship", "boat", "vessel"),
    ("airplane", "aircraft", "jet"),
    ("bicycle", "bike", "cycle"),
    ("truck", "lorry"),
    ("phone", "telephone", "handset"),
    ("letter", "note", "memo"),
    ("book", "volume", "tome"),
    ("document", "paperwork", "dossier"),
    ("announcement", "bulletin", "notice"),
    ("school", "academy", "institute"),
    ("college", "university"),
    ("test", "exam", "quiz"),
    ("grade", "score", "rating"),
    ("war", "warfare", "combat"),
    ("fight", "brawl", "scuffle"),
    ("speed", "velocity", "pace"),
    ("size", "dimension", "extent"),
    ("shape", "form", "figure"),
    ("color", "hue", "shade"),
    ("sound", "noise"),
    ("smell", "odor", "scent"),
    ("taste", "flavor", "savor"),
    ("danger", "peril", "menace"),
    ("luck", "fortune"),
    ("hurry", "rush", "hasten"),
    ("wait", "await"),
    ("stop", "halt", "cease"),
    ("allow", "permit"),
    ("forbid", "ban", "prohibit"),
    ("agree", "concur", "consent"),
    ("argue", "quarrel", "bicker"),
    ("think", "ponder", "reflect"),
    ("remember", "recall", "recollect"),
    ("understand", "comprehend", "grasp"),
    ("win", "triumph", "prevail"),
    ("grow", "expand", "enlarge"),
    ("shrink", "dwindle", "diminish"),
    ("rise", "ascend", "climb"),
    ("fall", "drop", "tumble"),
    ("carry", "transport", "convey"),
    ("send", "transmit"),
    ("leave", "depart", "exit"),
    ("move", "shift", "relocate"),
    ("turn", "rotate", "spin"),
    ("shake", "tremble", "shiver"),
    ("mix", "blend", "combine"),
    ("join", "connect", "link"),
    ("split", "divide", "separate"),
    ("gather", "collect", "assemble"),
    ("find", "discover", "locate"),
    ("search", "seek"),
    ("want", "desire", "wish"),
    ("love", "adore", "cherish"),
    ("hate", "loathe", "detest"),
    ("fear", "dread"),
    ("anger", "rage", "fury"),
    ("joy", "delight", "bliss"),
    ("skill", "talent", "knack"),
    ("energy", "vigor", "vitality"),
    ("honest", "truthful", "sincere"),
    ("polite", "courteous", "respectful"),
    ("rude", "impolite"),
    ("lazy", "idle", "sluggish"),
    ("busy", "occupied"),
    ("empty", "vacant", "hollow"),
    ("near", "nearby", "adjacent"),
    ("far", "distant", "remote"),
    ("wide", "broad"),
    ("thin", "slender", "slim"),
    ("thick", "dense"),
    ("heavy", "weighty", "hefty"),
    ("tall", "lofty", "towering"),
    ("short", "brief"),
    ("long", "lengthy"),
    ("round", "circular", "spherical"),
    ("soft", "gentle", "tender"),
    ("sharp", "keen", "pointed"),
    ("smooth", "sleek", "silky"),
    ("rough", "coarse", "rugged"),
    ("delicious", "tasty", "yummy"),
    ("hungry", "starving", "famished"),
    ("thirsty", "parched"),
    ("fat", "plump", "chubby"),
    ("skinny", "scrawny", "bony"),
    ("company", "firm", "corporation"),
    ("team", "crew", "squad"),
    ("crowd", "throng", "mob"),
    ("meeting", "conference"),
    ("party", "festivity", "gala"),
    ("holiday", "vacation"),
    ("salary", "wage", "paycheck"),
    ("profit", "earnings"),
    ("tax", "levy", "tariff"),
    ("crime", "offense", "felony"),
    ("prison", "jail", "penitentiary"),
    ("judge", "magistrate"),
    ("leader", "chief"),
    ("nation", "country"),
    ("world", "globe", "planet"),
    ("island", "isle"),
    ("valley", "glen", "dale"),
    ("lake", "pond"),
    ("cave", "cavern", "grotto"),
    ("garden", "yard"),
    ("field", "meadow", "pasture"),
    ("farm", "ranch", "homestead"),
    ("village", "hamlet"),
    ("room", "chamber"),
    ("tool", "implement", "utensil"),
    ("engine", "motor"),
    ("rope", "cord", "twine"),
    ("wood", "timber", "lumber"),
    ("fuel", "gasoline", "petrol"),
    ("garbage", "trash", "rubbish"),
    ("circle", "ring", "loop"),
    ("hole", "cavity", "pit"),
    ("sign", "symbol", "emblem"),
    ("example", "instance", "sample"),
    ("category", "class", "type"),
    ("amount", "quantity", "sum"),
    ("number", "numeral", "digit"),
    ("whole", "entire"),
)

# How many concepts the vocabulary has in total; the real groups are padded with
# pseudo-word groups up to this many.  A few hundred keeps each form rare enough
# that a handful of concepts pins down one passage among thousands.
N_CONCEPTS = 320

# Function and filler words: frequent, uninformative glue that makes passages
# read vaguely like prose and gives BM25 realistic low-IDF noise.
FILLER_WORDS: tuple[str, ...] = (
    "the", "the", "the", "a", "a", "an", "of", "of", "and", "and", "in", "to", "is",
    "with", "for", "on", "that", "this", "it", "was", "by", "as", "at", "from",
    "are", "be", "or", "which", "its", "their", "also", "often", "usually", "can",
    "may", "has", "have", "about", "into", "over", "under", "between", "during",
    "after", "before", "through", "some", "several", "most", "very", "more",
    "each", "other", "such", "when", "while", "where", "because", "although",
)

# Question-ish words a query may start with or contain.
QUERY_WORDS: tuple[str, ...] = (
    "what", "how", "why", "which", "does", "is", "the", "a", "of", "for", "to",
)

# Syllables for pseudo-words: consonant + vowel, plain enough to be pronounceable.
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
# Fixed (seed-independent) so the vocabulary is the same for every demo seed.
_VOCAB_SEED = 20240613


def _build_concepts() -> tuple[tuple[str, ...], ...]:
    """Real synonym groups, padded with pseudo-word groups to ``N_CONCEPTS``.

    Pseudo-word forms of one concept share no syllable pattern on purpose: their
    equivalence must be learned from data, exactly like that of real synonyms.
    """
    taken = {w for group in _REAL_GROUPS for w in group}
    taken.update(FILLER_WORDS, QUERY_WORDS)
    rng = random.Random(_VOCAB_SEED)

    def pseudo_word() -> str:
        while True:
            n_syllables = rng.choice((2, 3, 3))
            word = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(n_syllables))
            if word not in taken:
                taken.add(word)
                return word

    groups = list(_REAL_GROUPS)
    while len(groups) < N_CONCEPTS:
        groups.append(tuple(pseudo_word() for _ in range(rng.choice((2, 3, 3)))))
    return tuple(groups)


#: Every concept as a tuple of its surface forms; the index is the concept id.
CONCEPTS: tuple[tuple[str, ...], ...] = _build_concepts()

_CONCEPT_OF: dict[str, int] = {w: c for c, forms in enumerate(CONCEPTS) for w in forms}
assert len(_CONCEPT_OF) == sum(map(len, CONCEPTS)), "a word is in two concept groups"
assert not _CONCEPT_OF.keys() & (set(FILLER_WORDS) | set(QUERY_WORDS)), "filler word used as a concept"


def concept_of(word: str) -> int | None:
    """The concept id of a surface form, or None for filler/query words."""
    return _CONCEPT_OF.get(word)


# --------------------------------------------------------------------------- generation

_CONCEPTS_PER_PASSAGE = (4, 7)  # inclusive range
_PASSAGE_WORDS = (15, 40)
_CONCEPTS_PER_QUERY = (3, 5)
_QUERY_WORDS_RANGE = (4, 8)
_DUPLICATE_EVERY = 10  # about one query in this many gets a near-duplicate second positive
_TRAIN_QID_BASE = 100_000  # qids are integers; train and dev ranges never overlap
_DEV_QID_BASE = 900_000


def _concept_weights() -> list[float]:
    """Mildly skewed concept popularity, so IDF varies as in real text.

    Which concepts are popular is a fixed function of the concept id (not the
    seed) interleaved so real and pseudo concepts are mixed across ranks.
    """
    return [1.0 / (1.0 + (c * 7 % N_CONCEPTS) / 80.0) for c in range(N_CONCEPTS)]


def _draw_concepts(rng: random.Random, weights: list[float], k: int) -> list[int]:
    """k distinct concept ids, drawn by popularity."""
    chosen: list[int] = []
    while len(chosen) < k:
        c = rng.choices(range(N_CONCEPTS), weights)[0]
        if c not in chosen:
            chosen.append(c)
    return chosen


def _render_passage(rng: random.Random, concepts: list[int]) -> tuple[str, dict[int, str]]:
    """Text for a passage about ``concepts``, and the form used for each concept."""
    forms = {c: rng.choice(CONCEPTS[c]) for c in concepts}
    n_words = rng.randint(max(_PASSAGE_WORDS[0], 2 * len(concepts)), _PASSAGE_WORDS[1])
    words = [rng.choice(FILLER_WORDS) for _ in range(n_words - len(concepts))]
    # Scatter the concept words among the filler; concepts keep their drawn order.
    slots = sorted(rng.sample(range(n_words), len(concepts)))
    for slot, c in zip(slots, concepts):
        words.insert(slot, forms[c])
    return " ".join(words), forms


def _render_query(rng: random.Random, concepts: list[int], target_forms: dict[int, str]) -> str:
    """Query text naming ``concepts``, mostly with forms the target did NOT use.

    One or two concepts keep the target's form and every other one switches to
    another synonym (at least one always does; ~60% of concept words overall).
    With two literal matches BM25 usually finds the target, with one it usually
    drowns among the passages that share the query's other forms: dev MRR@10 of
    BM25 lands near 0.5, leaving clear headroom for a model that knows synonyms.
    """
    n_keep = rng.randint(1, min(2, len(concepts) - 1))
    keep = set(rng.sample(concepts, n_keep))
    words = []
    for c in concepts:
        if c in keep or len(CONCEPTS[c]) == 1:
            words.append(target_forms[c])
        else:
            words.append(rng.choice([f for f in CONCEPTS[c] if f != target_forms[c]]))
    rng.shuffle(words)
    lo = max(0, _QUERY_WORDS_RANGE[0] - len(words))
    hi = min(3, _QUERY_WORDS_RANGE[1] - len(words))
    for _ in range(rng.randint(lo, hi)):
        words.insert(rng.randint(0, len(words)), rng.choice(QUERY_WORDS))
    return " ".join(words)


def _covering(index: dict[int, set[int]], concepts: list[int]) -> set[int]:
    """Passages (by position) that contain every concept in ``concepts``."""
    return set.intersection(*(index[c] for c in concepts))


def generate_demo(
    out_dir: str | Path,
    *,
    seed: int = 13,
    n_passages: int = 2000,
    n_train: int = 300,
    n_dev: int = 100,
) -> dict[str, int]:
    """Write the demo data set into ``out_dir`` (created if missing).

    Writes ``collection.tsv``, ``queries.{train,dev}.tsv`` and
    ``qrels.{train,dev}.tsv`` directly (the caller handles atomicity) and returns
    the counts: ``passages``, ``train_queries``, ``dev_queries``, ``train_qrels``,
    ``dev_qrels``.  Same arguments, same bytes.

    Raises ValueError when the collection is too small for the queries: every
    query needs its own target passage.
    """
    if n_passages < 1 or n_train < 1 or n_dev < 1:
        raise ValueError("demo: n_passages, n_train and n_dev must all be >= 1")
    n_queries = n_train + n_dev
    if n_queries > n_passages:
        raise ValueError(
            f"demo: {n_train} train + {n_dev} dev queries need at least {n_queries} passages "
            f"(one target each), got n_passages={n_passages}"
        )
    if n_queries > _DEV_QID_BASE - _TRAIN_QID_BASE:
        raise ValueError(f"demo: at most {_DEV_QID_BASE - _TRAIN_QID_BASE} train queries")

    rng = random.Random(seed)
    weights = _concept_weights()
    # Near-duplicates take passages from the budget; only as many as there is room for.
    n_dups = min(n_queries // _DUPLICATE_EVERY, n_passages - n_queries)
    n_base = n_passages - n_dups

    # 1. Base passages: each a random concept set.
    base_concepts = [
        _draw_concepts(rng, weights, rng.randint(*_CONCEPTS_PER_PASSAGE)) for _ in range(n_base)
    ]

    # 2. Targets: a passage whose concept set is contained in no other passage's,
    #    so at least "all its concepts" identifies it uniquely.
    index: dict[int, set[int]] = {}
    for p, cs in enumerate(base_concepts):
        for c in cs:
            index.setdefault(c, set()).add(p)
    order = list(range(n_base))
    rng.shuffle(order)
    targets = [p for p in order if _covering(index, base_concepts[p]) == {p}][:n_queries]
    if len(targets) < n_queries:
        raise ValueError(f"demo: only {len(targets)} passages are distinct enough for {n_queries} queries")
    # Train targets first, dev targets after: disjoint by construction.

    # 3. Near-duplicates of some targets: same concepts, in a new order, rendered afresh.
    dup_of: dict[int, int] = {}  # target position -> its duplicate's position
    all_concepts = list(base_concepts)
    for t in sorted(rng.sample(range(n_queries), n_dups)):
        target = targets[t]
        cs = list(base_concepts[target])
        rng.shuffle(cs)
        dup_of[target] = len(all_concepts)
        all_concepts.append(cs)
        for c in cs:
            index[c].add(dup_of[target])

    # 4. Render every passage; then give pids in a shuffled order so targets and
    #    duplicates are not recognisable by position.
    rendered = [_render_passage(rng, cs) for cs in all_concepts]
    pid_of = list(range(len(all_concepts)))
    rng.shuffle(pid_of)

    # 5. Queries: the smallest random concept subset (3-5 preferred) that picks out
    #    exactly the target and its duplicate.
    queries: list[tuple[int, str, list[int]]] = []  # (qid, text, relevant pids)
    for i, target in enumerate(targets):
        relevant = {target} | ({dup_of[target]} if target in dup_of else set())
        cs = base_concepts[target]
        chosen = None
        for size in range(min(rng.randint(*_CONCEPTS_PER_QUERY), len(cs)), len(cs) + 1):
            for _ in range(20):
                subset = rng.sample(cs, size)
                if _covering(index, subset) == relevant:
                    chosen = subset
                    break
            if chosen is not None:
                break
        if chosen is None:  # unreachable: the full set is unique by step 2
            chosen = list(cs)
        text = _render_query(rng, chosen, rendered[target][1])
        qid = _TRAIN_QID_BASE + i if i < n_train else _DEV_QID_BASE + (i - n_train)
        queries.append((qid, text, sorted(pid_of[p] for p in relevant)))

    # 6. Write.  newline="\n" keeps the bytes identical on every platform.
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    collection = sorted((pid_of[p], text) for p, (text, _) in enumerate(rendered))
    with open(out / "collection.tsv", "w", encoding="utf-8", newline="\n") as f:
        f.writelines(f"{pid}\t{text}\n" for pid, text in collection)
    counts = {"passages": len(collection)}
    for split, rows in (("train", queries[:n_train]), ("dev", queries[n_train:])):
        with open(out / f"queries.{split}.tsv", "w", encoding="utf-8", newline="\n") as f:
            f.writelines(f"{qid}\t{text}\n" for qid, text, _ in rows)
        with open(out / f"qrels.{split}.tsv", "w", encoding="utf-8", newline="\n") as f:
            f.writelines(f"{qid}\t0\t{pid}\t1\n" for qid, _, pids in rows for pid in pids)
        counts[f"{split}_queries"] = len(rows)
        counts[f"{split}_qrels"] = sum(len(pids) for _, _, pids in rows)
    return counts
