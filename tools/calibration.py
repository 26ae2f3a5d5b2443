"""The calibration text NNCF's data-aware int4 options (AWQ, scale estimation, GPTQ) read: shipped
with the package, so a data-aware export needs no dataset download and no model hub.

Plain English prose and a few chat turns, written for ovchat (no license issue), about 1,900
tokens in 20 paragraphs; `samples()` gives one paragraph per calibration sample. It shares no
passage or topic with `fidelity.TEXT`, so an export is never judged on the text it was tuned on.
"""

TEXT = """\
A small garden can feed a family for much of the summer if it is planned with care. Choose a spot that gets at least six hours of sun, turn the soil in early spring, and mix in a few buckets of compost. Beans, lettuce and courgettes grow quickly and forgive beginners; tomatoes need a stake and a little more patience. Water in the morning rather than the evening, so the leaves dry before night and mould has less chance to take hold.

The first railways were built to carry coal, not people. Horses pulled wagons along wooden rails long before steam engines were strong enough to do the work. When passenger lines opened in the early nineteenth century, many doctors warned that travelling faster than thirty miles an hour would harm the human body. Within a generation the trains ran at twice that speed, and towns across the continent set their clocks by the timetable.

User: How do I fix a flat tyre on my bicycle?
Assistant: Take the wheel off, then use two tyre levers to lift one side of the tyre over the rim. Pull out the inner tube and pump a little air into it to find the hole; you can hear the hiss or hold it under water and watch for bubbles. Roughen the area with sandpaper, spread a thin layer of glue, wait a minute, and press the patch on firmly. Before you put the tube back, run your fingers around the inside of the tyre to remove the thorn or glass that caused the puncture.

Bread needs only four things: flour, water, salt and yeast. Mix them into a rough dough, leave it to rest for twenty minutes, and then knead it until it feels smooth and springs back when you press it. Let it rise in a warm place until it has doubled, shape it into a loaf, and let it rise again. Bake it in a hot oven until the crust is brown and the bottom sounds hollow when you tap it.

A function in a computer program is a named piece of work. It takes some inputs, called arguments, does something with them, and usually gives back a result. Good functions do one thing and have names that say what that thing is, such as count_words or send_invoice. When a program grows, splitting it into small functions makes it easier to test each part on its own and to find the line where a mistake was made.

Before the printing press, every book in Europe was copied by hand. A single Bible could take a skilled scribe more than a year. When movable type arrived in the fifteenth century, a workshop could produce hundreds of copies in the time it once took to make one. Prices fell, more people learned to read, and ideas travelled from one city to another faster than any ruler could stop them.

User: Can you suggest a simple dinner for four people?
Assistant: A vegetable curry is easy and cheap. Fry an onion with garlic, ginger and two spoons of curry paste, add chopped potatoes, carrots and a tin of chickpeas, then pour in a tin of tomatoes and a tin of coconut milk. Let it simmer for twenty-five minutes and stir in a handful of spinach at the end. Serve it with rice or flatbread, and put a bowl of yoghurt on the table for anyone who finds it too hot.

Clouds form when warm, moist air rises and cools. The water vapour condenses on tiny particles of dust or salt, making droplets so small that they float. Low, flat clouds often bring drizzle, while tall clouds with dark bases can grow into thunderstorms by the afternoon. Sailors and farmers learned to read the sky long before there were weather forecasts, and many of their sayings turn out to be surprisingly accurate.

The violin has four strings tuned a fifth apart, and its body is carved from spruce and maple. The sound comes from the bow, strung with horsehair and rubbed with rosin, which grips the string and lets it go hundreds of times a second. A beginner's notes often squeak because the bow moves too fast or presses too lightly. With practice the player learns to control speed, weight and the point of contact, and the same instrument begins to sing.

Dear Maria, thank you for the parcel, which arrived on Tuesday in perfect condition. The children have already eaten half of the biscuits and are arguing about who gets the rest. The weather here has finally turned, and we spent Sunday walking along the river to the old mill. I hope your new job is going well and that the office is kinder than the last one. Write soon and tell us when you can visit. With love, Anna.

User: What is the difference between a virus and a bacterium?
Assistant: A bacterium is a living cell that can feed, grow and divide on its own, and many kinds are harmless or even useful, like those that help us digest food. A virus is much smaller and cannot reproduce by itself: it has to enter a living cell and use that cell's machinery to make copies of itself. That is why antibiotics, which attack the parts of bacterial cells, do nothing against a cold or the flu.

Honeybees live in colonies of tens of thousands. A single queen lays the eggs, the male drones exist mainly to mate, and the worker bees do everything else: they clean the hive, feed the young, guard the entrance and fly out to collect nectar and pollen. A worker that finds a good patch of flowers returns and performs a dance on the comb, and the angle and length of the dance tell her sisters the direction and distance of the food.

To learn a new language as an adult, little and often works better than long sessions once a week. Ten minutes of vocabulary every morning, a short podcast on the way to work, and a conversation with a native speaker now and then will carry you further than a thick grammar book read from cover to cover. Mistakes are part of the process; people are usually delighted that you are trying and will help you find the word you are looking for.

The old lighthouse stood at the end of a narrow spit of rock, and for ninety years a keeper climbed its one hundred and twelve steps every evening to light the lamp. The last keeper, a quiet man named Tomas, kept a logbook in which he recorded the wind, the ships that passed and the birds that rested on the railing. When the light was made automatic, he was given a cottage in the village, but on stormy nights he still walked to the harbour to watch the beam turn.

User: Explain what interest on a loan means.
Assistant: Interest is the price you pay for borrowing money. If you borrow one thousand pounds at five percent a year, you owe fifty pounds in interest after the first year on top of the amount you borrowed. Many loans charge interest on the remaining balance, so paying back more early reduces the total cost. Always compare the annual percentage rate, because it includes fees and shows the true cost of different offers.

Maps are always a compromise. The Earth is round, and there is no way to flatten its surface onto paper without stretching some parts and squeezing others. A map that keeps the shapes of countries correct makes those near the poles look far too large, while one that keeps areas honest bends the coastlines. Choosing a projection is therefore a choice about which truth matters most for the journey or the lesson at hand.

Running a first marathon takes about four months of steady preparation. Most plans build up the long run by a mile or two each week, with easier days in between and a lighter week every month so the body can recover. Good shoes matter more than expensive clothes. On race day the hardest part is holding back at the start, when the crowd and the excitement make an easy pace feel far too slow.

A committee met on Thursday to discuss the new library. The architect presented three designs, and the members agreed that the building should have large windows, a quiet reading room and a space for children that would not disturb anyone else. The question of cost took most of the evening. In the end they voted to ask the council for a larger budget and to hold a public meeting next month so that residents could give their views.

Glass is made by melting sand, soda and lime at very high temperatures until they flow like thick honey. A glassblower gathers a lump of it on the end of a long metal pipe, blows gently to form a bubble, and shapes it with wooden tools and wet newspaper while turning the pipe without stopping. The finished piece must cool slowly in a special oven overnight; if it cools too fast, stresses build up inside it and it may crack days later.

User: I have an interview tomorrow. Any advice?
Assistant: Read about the company and the role tonight, and think of two or three stories from your past work that show the skills they ask for. Prepare a couple of questions to ask them, because it shows real interest. Lay out your clothes, check the route and plan to arrive ten minutes early. In the interview, listen to each question fully, take a breath before you answer, and it is fine to say that you need a moment to think.
"""


def samples() -> list[str]:
    """The text as calibration samples: one paragraph each."""
    return [paragraph.strip() for paragraph in TEXT.split("\n\n") if paragraph.strip()]
