"""Function words that hybrid search's word rank leaves out of a question.

A question's articles, pronouns, auxiliaries and prepositions ("does", "the", "his") say how
it is asked, not what it asks about; matched against memories, they rank whichever memory
happens to share them first, and reciprocal rank fusion gives that memory the same boost as a
real match (PERFORMANCE.md, "Recall by meaning"). The word index itself keeps every word (its
PostgreSQL configuration is ``simple``), so a substring or a memory's own text loses nothing.

Kept short on purpose: the words that are function words in every use, in English and in the
languages agents most often write memories in besides it. A word that is a function word in
one language and a content word in English ("die", "war", "hat", "son", "dove") is left
out, since English questions are the most common. Words are case-folded and at least two
letters long, as the word rank splits a question (one-letter words never count).
"""

from __future__ import annotations

ENGLISH = """
about above after again against all also am an and any are as at be because been before being
below between both but by can could did didn do does doesn doing don down during each either
else ever few for from further had has hasn have haven having he her here hers herself him
himself his how however if in into is isn it its itself just me might mine more most must my
myself neither no nor not now of off on once only onto or other ought our ours ourselves out
over own same shall she should shouldn so some such than that the their theirs them themselves
then there these they this those through to too under until up upon us very was wasn we were
weren what whatever when whenever where whether which while who whom whose why will with
within without would wouldn yet you your yours yourself yourselves
"""

GERMAN = """
aber als am an auch auf aus bei bis bist dass dem der des dich dir doch du durch ein eine
einem einen einer eines er es für gegen hab habe haben hast ich ihm ihn ihr ihre im in ist
ja jede jeder kann mich mir mit nach nicht noch nur ob oder ohne sein seine sich sie sind so
über um und uns unser vom von vor warum was weil welche wenn wer wie wir wird wo zu zum zur
"""

FRENCH = """
au aux avec ce ces cette dans des du elle elles en est et il ils je la le les leur lui ma
mais me mes moi mon ne nous ou où par pas pour qu que quel quelle qui sa se ses sont sur ta
te tes toi ton tu un une vos votre vous
"""

SPANISH = """
al algo como con cual cuando de del el ella ellas ellos en entre es esta este esto fue ha hay
la las le les lo los me mi mis muy más no nos o para pero por porque que qué se ser si sin
sobre su sus te tu tus un una uno unos y ya yo
"""

ITALIAN = """
ai al alla alle anche che chi ci come con da dal dalla degli dei del della delle di dove
gli ha hanno il io la le lei lo loro lui ma mi mio nel nella non per perché più quale quando
questo se si sono su sua suo tu un una uno voi
"""

PORTUGUESE = """
ao aos as com como da das de do dos ela ele eles em entre era essa esse esta este eu foi há
isso lhe mais mas me meu minha na nas no nos não os ou para pela pelo por porque qual quando
que se seu sua são também tem um uma você
"""

DUTCH = """
aan al als bij dan dat de deze die dit door een en er had heb heeft het hij hoe ik in is je
jij kan maar me met mij naar niet nog of om ons ook op over te tot uit van voor was wat we
wie wij zij zijn zo
"""

# Function words elsewhere, content words in English questions.
ENGLISH_CONTENT = frozenset({"art", "bin", "chi", "come", "den", "die", "dove", "era", "fin", "hat", "hoe",
                             "man", "mit", "sin", "son", "war"})

STOPWORDS = frozenset(
    word for words in (ENGLISH, GERMAN, FRENCH, SPANISH, ITALIAN, PORTUGUESE, DUTCH)
    for word in words.split() if len(word) > 1) - ENGLISH_CONTENT
