"""The bundled demo data: Chinese Q&A-site question titles labelled by timeliness.

Three classes, as in the reference report (``data/README.md`` is the data card):

* ``"0"`` evergreen: stays relevant for years ("如何学习 Python？");
* ``"1"`` mid-term: relevant for months ("2021 年考研应该怎么准备？");
* ``"2"`` short-term news: tied to a date or an event ("如何看待 2021 年 618 大促？").

Titles come from templates filled from vocabularies. Most templates belong to one class; the
*ambiguous* templates draw the hidden ``true_label`` at random from a fixed class distribution,
so the same title can truly be mid-term or short-term: such samples are hard, not mislabeled.
Observed labels are the true labels plus injected noise (:class:`NoiseConfig`), each kind
realised exactly (``round(rate * eligible)`` rows), and a ``noise`` column says which rows got
which kind. The default noise is mostly *systematic* annotator confusion
(:class:`SystematicNoise`): a share of one sub-population given one specific wrong class, the
kind of noise that makes a model learn a wrong rule. Near-duplicate titles (punctuation, a 请问
prefix, spacing, a synonym) share a ``group`` and their true label.

Everything is a pure function of the seed: same seed, bitwise-identical frames. Each split
draws from its own child seed, so changing one split's size leaves the others unchanged.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cartoflow.datasets import _atomic_write, save_dataset

__all__ = [
    "CLASSES",
    "DEFAULT_SYSTEMATIC",
    "DEMO_SIZES",
    "GENERATOR_VERSION",
    "TEMPLATES",
    "VOCAB",
    "NoiseConfig",
    "PairNoise",
    "PatternNoise",
    "SystematicNoise",
    "demo_meta",
    "demo_sizes",
    "generate_demo",
    "realised_noise",
    "write_demo",
]

GENERATOR_VERSION = 2

CLASSES: dict[str, str] = {"0": "evergreen", "1": "mid-term", "2": "short-term"}
_NUM_CLASSES = len(CLASSES)

DEMO_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"n_train": 600, "n_eval": 300, "n_unlabeled": 600},
    "small": {"n_train": 4000, "n_eval": 1000, "n_unlabeled": 4000},
    "demo": {"n_train": 20000, "n_eval": 4000, "n_unlabeled": 40000},
}

# Share of each split's rows that are near-duplicates of another row of the same split.
NEAR_DUPLICATE_RATE = 0.08

# How often a title comes from each template family (clear classes, or ambiguous).
FAMILY_WEIGHTS: dict[str, float] = {"0": 0.28, "1": 0.28, "2": 0.24, "ambiguous": 0.20}

DEFAULT_PATTERN = "如何评价|如何看待|怎么看待|怎么评价"

# --------------------------------------------------------------------------------------------
# Vocabularies. A slot ``{name}`` draws uniformly from VOCAB[name]; ``{name2}`` from the same
# vocabulary, always a different value than ``{name}`` in the same title.

VOCAB: dict[str, tuple[str, ...]] = {
    "skill": (
        "Python", "Java", "C 语言", "编程", "英语口语", "日语", "法语", "钢琴", "吉他",
        "尤克里里", "摄影", "素描", "水彩画", "游泳", "机器学习", "深度学习", "数据分析",
        "Excel", "写作", "演讲", "烹饪", "围棋", "国际象棋", "滑雪", "健身", "高等数学",
        "线性代数", "微积分", "经济学", "心理学", "哲学", "前端开发", "视频剪辑", "PS", "书法",
        "瑜伽", "理财", "时间管理", "手绘", "篮球", "乒乓球", "SQL",
    ),
    "topic": (
        "量子力学", "相对论", "中国古代史", "罗马帝国的历史", "宇宙大爆炸", "进化论",
        "区块链技术", "人工智能", "黑洞", "基因编辑", "唐诗", "宋词", "古典音乐", "印象派绘画",
        "存在主义", "博弈论", "行为经济学", "认知心理学", "热力学第二定律", "混沌理论",
        "拓扑学", "概率论", "密码学", "操作系统原理", "编译原理", "天文学", "地质学",
        "古希腊哲学", "禅宗", "西方艺术史", "营养学", "睡眠科学", "语言学", "社会学",
        "城市规划", "建筑设计",
    ),
    "phenomenon": (
        "天空是蓝色的", "猫喜欢钻纸箱", "人会做梦", "海水是咸的", "飞机能飞起来",
        "冬天容易感冒", "切洋葱会流泪", "月亮总是同一面朝向地球", "咖啡能提神", "人会打哈欠",
        "冰会浮在水面上", "鸟站在电线上不会触电", "高原上水烧不开", "人老了会长白头发",
        "雨后会出现彩虹", "熬夜后皮肤会变差", "狗的鼻子总是湿的", "有些人天生怕冷",
        "星星会闪烁", "每个人的指纹都不一样", "烟花有不同的颜色", "秋天树叶会变黄",
        "运动后肌肉会酸痛", "吃辣会出汗", "金属摸起来比木头凉", "飞蛾会扑火",
        "有人是左撇子", "喝酒会脸红",
    ),
    "product": (
        "iPhone 12", "iPhone 13", "华为 Mate 40", "华为 P50", "小米 11", "小米 12",
        "MacBook Air", "MacBook Pro", "iPad Air", "iPad Pro", "特斯拉 Model 3",
        "特斯拉 Model Y", "比亚迪汉", "蔚来 ES6", "小鹏 P7", "理想 ONE", "大疆 Mini 2",
        "Switch OLED", "PS5", "Xbox Series X", "Kindle", "AirPods Pro", "戴森吹风机",
        "荣耀 V40", "OPPO Find X3", "vivo X70", "索尼 A7M4", "Apple Watch 7", "华为 MateBook",
        "小米电视 6", "一加 9", "三星 S21",
    ),
    "category": (
        "冰箱", "空调", "微波炉", "洗碗机", "扫地机器人", "电动牙刷", "降噪耳机", "投影仪",
        "净水器", "空气净化器", "机械键盘", "显示器", "路由器", "电饭煲", "空气炸锅", "洗衣机",
        "热水器", "移动硬盘", "单反相机", "电动自行车",
    ),
    "company": (
        "腾讯", "阿里巴巴", "字节跳动", "美团", "拼多多", "京东", "百度", "小米", "华为", "滴滴",
        "快手", "B 站", "网易", "苹果", "特斯拉", "蔚来", "携程", "知乎", "微博", "大疆",
        "比亚迪", "贝壳", "小红书", "蚂蚁集团",
    ),
    "person": (
        "罗永浩", "雷军", "马斯克", "库克", "张一鸣", "马化腾", "董明珠", "李佳琦", "易烊千玺",
        "周杰伦", "谷爱凌", "苏炳添", "全红婵", "杨倩", "姚明", "刘慈欣", "张艺谋", "吴京",
        "王一博", "刘翔", "郎平", "武大靖", "孙颖莎", "樊振东", "巴菲特", "贝索斯", "梅西",
        "C 罗", "詹姆斯", "库里",
    ),
    "city": (
        "北京", "上海", "深圳", "广州", "杭州", "成都", "武汉", "南京", "西安", "重庆", "郑州",
        "长沙", "苏州", "天津", "青岛", "厦门", "大连", "昆明", "合肥", "济南", "哈尔滨", "沈阳",
        "福州", "南昌", "贵阳", "三亚",
    ),
    "event": (
        "618 大促", "双十一", "春晚", "东京奥运会", "北京冬奥会", "苹果秋季发布会",
        "华为开发者大会", "高考放榜", "世界杯预选赛", "NBA 总决赛", "英雄联盟全球总决赛",
        "戛纳电影节", "金马奖颁奖典礼", "两会", "进博会", "世界人工智能大会", "奥斯卡颁奖典礼",
        "欧洲杯决赛", "中秋晚会", "跨年晚会", "小米发布会", "WWDC", "全运会", "亚运会",
        "诺贝尔奖公布", "春运",
    ),
    "year": tuple(str(y) for y in range(2015, 2025)),
    "month": tuple(str(m) for m in range(1, 13)),
    "day": tuple(str(d) for d in range(1, 29)),
    "season": ("春季", "夏季", "秋季", "冬季"),
    "exam": (
        "考研", "国考", "省考", "雅思", "托福", "高考", "法考", "CPA", "教资", "四六级", "GRE",
        "考公",
    ),
    "disaster": (
        "暴雨", "地震", "台风", "山火", "大面积停电", "洪水", "疫情", "暴雪", "龙卷风",
        "化工厂爆炸", "地铁故障", "冰雹",
    ),
    "team": (
        "湖人", "勇士", "皇马", "巴萨", "曼城", "利物浦", "国足", "中国女排", "广东宏远",
        "辽宁本钢", "EDG", "RNG", "拜仁", "巴黎圣日耳曼",
    ),
    "policy": (
        "双减", "延迟退休", "个税改革", "房产税试点", "三孩", "碳中和", "药品集采",
        "新能源补贴退坡", "996 整治", "反垄断", "限塑令", "垃圾分类",
    ),
    "genre": ("科幻", "悬疑", "纪录片", "动画", "武侠", "推理", "历史", "爱情", "恐怖", "战争"),
    "show": (
        "觉醒年代", "山海情", "隐秘的角落", "庆余年", "沉默的真相", "鬼灭之刃", "进击的巨人",
        "三十而已", "人世间", "开端", "梦华录", "狂飙",
    ),
    "industry": (
        "互联网", "金融", "教育", "医疗", "新能源", "半导体", "游戏", "房地产", "快消", "制造业",
        "咨询", "电商", "芯片", "自动驾驶",
    ),
    "major": (
        "计算机", "金融学", "临床医学", "法学", "土木工程", "电子信息", "心理学", "汉语言文学",
        "会计", "机械工程", "新闻传播", "建筑学",
    ),
    "animal": (
        "猫", "狗", "仓鼠", "兔子", "鹦鹉", "金鱼", "乌龟", "柯基", "布偶猫", "哈士奇", "龙猫",
        "刺猬",
    ),
    "book": (
        "三体", "百年孤独", "人类简史", "活着", "平凡的世界", "围城", "红楼梦", "1984", "小王子",
        "明朝那些事儿", "西游记", "追风筝的人", "白夜行", "挪威的森林", "局外人", "月亮与六便士",
    ),
    "food": (
        "红烧肉", "宫保鸡丁", "提拉米苏", "麻婆豆腐", "饺子", "糖醋排骨", "蛋炒饭", "酸菜鱼",
        "戚风蛋糕", "可乐鸡翅", "番茄炒蛋", "水煮鱼", "小龙虾", "肉夹馍",
    ),
    "dynasty": ("秦朝", "汉朝", "隋朝", "唐朝", "宋朝", "元朝", "明朝", "清朝", "西晋", "东汉"),
    "habit": (
        "跑步", "游泳", "早起", "冥想", "喝茶", "吃素", "午睡", "跳绳", "骑行", "读书", "写日记",
        "喝咖啡",
    ),
    "action": (
        "裁员", "架构调整", "拆分业务", "回购股票", "更换 CEO", "下调业绩预期", "被约谈",
        "收购竞争对手", "暂停招聘", "宣布涨价", "宣布上市", "关停部分业务",
    ),
    "person_news": (
        "宣布退役", "官宣恋情", "回应质疑", "夺得冠军", "发布新专辑", "宣布离职", "公开道歉",
        "打破纪录", "获得提名", "宣布结婚",
    ),
    "game": (
        "原神", "王者荣耀", "英雄联盟", "塞尔达传说", "艾尔登法环", "我的世界", "动物森友会",
        "和平精英", "永劫无间", "守望先锋",
    ),
    "measure": ("限行", "限电", "停课", "全员核酸", "错峰上班", "地铁限流", "封控管理", "限购"),
}  # fmt: skip

# --------------------------------------------------------------------------------------------
# Templates: (pattern, class distribution over "0", "1", "2").


Probs = tuple[float, float, float]

# A bare pattern belongs to its family's class; (pattern, probs) draws the true label from
# probs. Soft entries in the class families are mostly that class but sometimes another one.
TEMPLATES: dict[str, tuple[str | tuple[str, Probs], ...]] = {
    "0": (
        "如何学习{skill}？",
        "零基础怎么自学{skill}？",
        "学习{skill}有哪些好的入门书？",
        "{skill}入门大概需要多长时间？",
        "怎样才能提高自己的{skill}水平？",
        ("成年人学{skill}还来得及吗？", (0.85, 0.15, 0.0)),
        "{skill}和{skill2}应该先学哪个？",
        "为什么{phenomenon}？",
        "{phenomenon}的原因是什么？",
        "{topic}的基本原理是什么？",
        "如何通俗地解释{topic}？",
        "有哪些关于{topic}的好书推荐？",
        "普通人有必要了解{topic}吗？",
        "{topic}和{topic2}有什么联系？",
        "如何向孩子解释{topic}？",
        "如何看待{topic}对人类社会的影响？",
        "养{animal}需要注意什么？",
        "第一次养{animal}要准备哪些东西？",
        "{animal}一般能活多少年？",
        "{food}的家常做法是什么？",
        "怎样做出好吃的{food}？",
        "如何评价《{book}》这本书？",
        "《{book}》讲了一个什么故事？",
        "为什么说《{book}》是经典？",
        "有哪些好看的{genre}电影推荐？",
        "{major}专业主要学什么？",
        "{category}的工作原理是什么？",
        "选购{category}时应该看哪些参数？",
        "{city}有哪些值得一去的景点？",
        "{city}有哪些地道的美食？",
        ("在{industry}行业工作是一种怎样的体验？", (0.85, 0.15, 0.0)),
        "{dynasty}为什么会灭亡？",
        "{dynasty}的百姓过着怎样的生活？",
        "长期{habit}对身体有什么好处？",
        "怎样养成{habit}的习惯？",
        "《{game}》有哪些新手技巧？",
    ),
    "1": (
        "{year}年{exam}应该怎么准备？",
        "{year}年{exam}报名人数会增加吗？",
        "{year}年{exam}的分数线会上涨吗？",
        "{year}年的{exam}改革对考生有什么影响？",
        ("现在入手{product}还值得吗？", (0.0, 0.85, 0.15)),
        "{product}值得买吗？",
        "{product}和{product2}该选哪个？",
        "{product}用了三个月，体验怎么样？",
        "如何评价{product}？",
        "{year}年买{product}还是再等等？",
        "今年{season}{city}的房价会涨吗？",
        ("今年{city}的租房市场行情怎么样？", (0.1, 0.9, 0.0)),
        "{year}年{city}落户政策有什么变化？",
        "最近{city}新开的商场值得去吗？",
        "{year}年{industry}行业前景如何？",
        "{year}届{major}专业毕业生好找工作吗？",
        "{year}年{major}考研难度会变大吗？",
        "{year}年秋招{industry}行业薪资水平怎么样？",
        "{year}年下半年{industry}行业还会裁员吗？",
        ("最近{industry}行业为什么这么火？", (0.0, 0.8, 0.2)),
        "{policy}政策实施后会带来哪些影响？",
        "如何看待{policy}政策？",
        "{policy}政策落地半年了，效果如何？",
        "最近在追的《{show}》好看吗？",
        "《{show}》什么时候出第二季？",
        "《{game}》新版本值得回坑吗？",
        "这个赛季{team}能进季后赛吗？",
        ("{company}最近的业务调整意味着什么？", (0.0, 0.8, 0.2)),
        "如何看待{company}近期的股价表现？",
        "这几个月{company}的新业务发展得怎么样？",
        "{company}{year}年校招难度大吗？",
        "{year}年入职{company}是一种怎样的体验？",
        "现在是买{category}的好时机吗？",
        "今年{season}有哪些值得看的新番？",
    ),
    "2": (
        "如何看待{year}年{event}？",
        ("{year}年{event}有哪些值得关注的看点？", (0.0, 0.15, 0.85)),
        "怎么评价{year}年{event}的节目？",
        "{year}年{event}的直播在哪里看？",
        "{year}年{month}月{day}日的{event}有哪些细节值得关注？",
        "如何评价{person}在{year}年{event}上的表现？",
        "{event}上{person}说的那句话是什么意思？",
        ("{person}在{event}上夺冠意味着什么？", (0.1, 0.1, 0.8)),
        "今晚的{event}有哪些亮点？",
        "昨天的{event}你觉得怎么样？",
        "{event}门票今天开抢，怎样才能抢到？",
        "{month}月{day}日{city}发生{disaster}，现在情况如何？",
        "{city}今天突发{disaster}，大家都还好吗？",
        "刚刚{city}{disaster}，有没有在现场的朋友？",
        "今天{city}地铁为什么停运了？",
        "{city}{month}月{day}日起{measure}，具体是怎么安排的？",
        "{company}今天宣布{action}，会有什么影响？",
        "{month}月{day}日{company}突然{action}，是真的吗？",
        "怎么看待{company}昨天的{action}？",
        "如何看待{month}月{day}日{company}股价大跌？",
        "刚刚发布的{product}有哪些亮点？",
        "{company}{month}月{day}日的发布会有什么值得期待？",
        "为什么今天{company}的服务崩了？",
        "{person}昨晚{person_news}，大家怎么看？",
        "{person}今天{person_news}，网友怎么看？",
        "{person}刚刚发布的微博是什么意思？",
        "{person}{month}月{day}日的演讲透露了哪些信号？",
        "{team}今晚能赢吗？",
        "{month}月{day}日{team}对阵{team2}，谁会赢？",
        "昨晚{team}输给{team2}，问题出在哪？",
    ),
    # The true label of these is drawn from the given distribution: the same title can truly
    # belong to two classes, so no model gets all of them right (hard, not mislabeled).
    "ambiguous": (
        ("新发布的{product}怎么样？", (0.0, 0.5, 0.5)),
        ("{product}卖得怎么样？", (0.0, 0.5, 0.5)),
        ("{year}年{event}和往年相比有什么不同？", (0.0, 0.4, 0.6)),
        ("{month}月起{city}实行{measure}，对生活有什么影响？", (0.0, 0.5, 0.5)),
        ("如何看待{city}的{measure}政策？", (0.0, 0.5, 0.5)),
        ("怎么看待{company}的{action}？", (0.0, 0.5, 0.5)),
        ("{team}为什么最近状态不好？", (0.0, 0.5, 0.5)),
        ("如何评价{person}？", (0.4, 0.35, 0.25)),
        ("{person}为什么这么火？", (0.3, 0.4, 0.3)),
        ("《{show}》为什么这么火？", (0.3, 0.5, 0.2)),
        ("关于{policy}，大家有什么看法？", (0.3, 0.5, 0.2)),
        ("{industry}行业现在还值得进入吗？", (0.4, 0.6, 0.0)),
        ("{city}的房价还会涨吗？", (0.3, 0.7, 0.0)),
        ("学{skill}现在还来得及吗？", (0.6, 0.4, 0.0)),
        ("{product}有哪些缺点？", (0.4, 0.6, 0.0)),
        ("{year}年{exam}难吗？", (0.2, 0.5, 0.3)),
    ),
}  # fmt: skip

# Near-duplicate perturbations: synonym pairs (both directions are used) and prefixes.
SYNONYMS: tuple[tuple[str, str], ...] = (
    ("如何", "怎么"),
    ("怎样", "如何"),
    ("有哪些", "有什么"),
    ("推荐", "安利"),
    ("值得买吗", "值不值得买"),
    ("为什么", "为啥"),
    ("大家", "各位"),
    ("现在", "目前"),
    ("最近", "近期"),
    ("好书", "好的书"),
    ("怎么样", "如何"),
)
PREFIXES: tuple[str, ...] = ("请问", "请问：", "求问，", "想知道")

# Class-neutral framing that real titles carry; each is used on a fixed share of titles so
# that independently generated titles rarely coincide exactly.
DECORATION_RATE = 0.3
DECORATION_PREFIXES: tuple[str, ...] = (
    "想问一下，", "新手求助：", "一直很好奇，", "说真的，", "认真提问：", "求科普：",
    "作为一个学生，", "作为一个上班族，", "作为外行想问，", "有个问题：", "纯好奇，",
    "弱弱地问一句，",
)  # fmt: skip
DECORATION_SUFFIXES: tuple[str, ...] = (
    "？求解答", "？有什么建议吗？", "？在线等", "？求大神指点", "？说说你的看法",
    "？有经验的来说说", "？谢谢", "？急",
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Noise configuration.


def _round_half_up(value: float) -> int:
    return int(np.floor(value + 0.5))


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"Expected a valid regular expression, but {pattern!r}: {exc}") from None
    return pattern


class PairNoise(BaseModel):
    """Class-pair confusion: swap the two classes on a share of the rows that hold either.

    Exactly ``round(rate * m)`` rows are swapped, where ``m`` is the number of rows whose true
    label is one of ``classes``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: tuple[str, str] = Field(description="The two confused classes, e.g. ('0', '2').")
    rate: float = Field(ge=0.0, le=1.0, description="Share of those rows that get swapped.")

    @field_validator("classes")
    @classmethod
    def _known_pair(cls, classes: tuple[str, str]) -> tuple[str, str]:
        unknown = [c for c in classes if c not in CLASSES]
        if unknown or classes[0] == classes[1]:
            raise ValueError(
                f"Expected two different classes among {sorted(CLASSES)}, but got {classes}."
            )
        # ("2", "0") is the same confusion as ("0", "2"): one spelling, one key.
        first, second = sorted(classes)
        return (first, second)

    @property
    def key(self) -> str:
        """The name this noise kind goes by in the ``noise`` column and in meta.json."""
        return f"pair:{self.classes[0]}-{self.classes[1]}"


class PatternNoise(BaseModel):
    """Pattern noise: titles matching a regex get a random other label on a share of rows.

    Models the reference report's 如何评价 / 如何看待 titles that annotators labelled
    inconsistently. Exactly ``round(rate * m)`` of the ``m`` matching rows get a label drawn
    from ``weights`` (renormalised over the classes other than the row's true label).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str = Field(default=DEFAULT_PATTERN, description="Regular expression on the title.")
    rate: float = Field(ge=0.0, le=1.0, description="Share of matching rows that get relabelled.")
    weights: tuple[float, float, float] | None = Field(
        default=None, description="Relative odds of classes 0, 1, 2 as the wrong label."
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        return _check_regex(pattern)

    @field_validator("weights")
    @classmethod
    def _valid_weights(
        cls, weights: tuple[float, float, float] | None
    ) -> tuple[float, float, float] | None:
        if weights is not None and (min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"Expected non-negative weights with a positive sum, got {weights}.")
        return weights

    @property
    def key(self) -> str:
        """The name this noise kind goes by in the ``noise`` column and in meta.json."""
        return f"pattern:{self.pattern}"


class SystematicNoise(BaseModel):
    """Systematic annotator confusion: one sub-population gets ONE specific wrong class.

    Real label noise is rarely uniform: annotators misread a whole kind of title the same way
    (the reference report's 如何评价 / 如何看待 titles: 1,275 of 1,627 labelled "1"). Of the
    ``m`` rows whose title matches ``pattern`` and whose true label is in ``source``, exactly
    ``round(rate * m)`` get the label ``target``. Because the wrong label is always the same
    one, the model learns a wrong rule for the sub-population and the clean eval set, which
    holds the same kind of titles with their true labels, shows it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Short name; the rows it changes say 'systematic:<name>' in `noise`.",
    )
    pattern: str = Field(description="Regular expression on the title that picks the rows.")
    source: tuple[str, ...] = Field(
        min_length=1, description="True classes that get confused, e.g. ('2',)."
    )
    target: str = Field(description="The one wrong class they are given, e.g. '1'.")
    rate: float = Field(ge=0.0, le=1.0, description="Share of the picked rows that get `target`.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        return _check_regex(pattern)

    @model_validator(mode="after")
    def _known_classes(self) -> SystematicNoise:
        unknown = [c for c in (*self.source, self.target) if c not in CLASSES]
        if unknown or self.target in self.source or len(set(self.source)) != len(self.source):
            raise ValueError(
                f"Expected distinct source classes and a different target class among "
                f"{sorted(CLASSES)}, but got source {self.source} and target {self.target!r}."
            )
        return self

    @property
    def key(self) -> str:
        """The name this noise kind goes by in the ``noise`` column and in meta.json."""
        return f"systematic:{self.name}"

    def selected(self, texts: pd.Series, true: np.ndarray) -> np.ndarray:
        """(N,) bool: the rows the rate is relative to (title matches, true label in source).

        ``true`` holds class indices (int) or class names (str).
        """
        matching = texts.str.contains(self.pattern, regex=True).to_numpy(dtype=bool)
        names = np.asarray(list(CLASSES), dtype=object)
        labels = names[true] if np.issubdtype(np.asarray(true).dtype, np.integer) else true
        return matching & np.isin(np.asarray(labels, dtype=object), list(self.source))


def _any_of(vocab: str) -> str:
    """A regex matching any value of VOCAB[vocab], each taken literally."""
    return "|".join(re.escape(value) for value in VOCAB[vocab])


# The default annotator confusions (see data/README.md): each gives 40% of one sub-population
# one specific wrong class, enough for the model to learn the wrong rule there.
DEFAULT_SYSTEMATIC: tuple[SystematicNoise, ...] = (
    # Recurring events (春晚, 双十一, 618 大促, ...) come back every year: read as mid-term news.
    SystematicNoise(name="events", pattern=_any_of("event"), source=("2",), target="1", rate=0.4),
    # A product in the title reads as launch news: mid-term buying advice labelled short-term.
    SystematicNoise(
        name="products", pattern=_any_of("product"), source=("1",), target="2", rate=0.4
    ),
    # Exam preparation reads as timeless study advice: this year's exam labelled evergreen.
    SystematicNoise(name="exams", pattern=_any_of("exam"), source=("1",), target="0", rate=0.4),
)


class NoiseConfig(BaseModel):
    """Label noise injected into the training split (eval and unlabeled stay clean).

    Kinds are applied in the order systematic, pattern, pair, uniform, each to rows no earlier
    kind touched, so every noised row differs from its true label and each kind's measured rate
    is its request up to rounding. Rates are relative to: the picked rows (systematic: title
    matches and true label in ``source``), all matching rows (pattern), all rows whose true label
    is in the pair (pair), all rows (uniform).

    The defaults give about 15% wrong labels in the training split (demo seed 0: 14.6%), most
    of them systematic, because that is the noise that hurts a model: 40% of the class-2 event
    titles labelled "1", 40% of the class-1 product titles labelled "2" and 40% of the class-1
    exam titles labelled "0" (:data:`DEFAULT_SYSTEMATIC`); then 20% of the 如何评价/如何看待/
    怎么看待/怎么评价 titles relabelled, mostly to "1" (weights 1:4:1), as the reference report's
    annotators did; 2% of the class 0/2 rows swapped; 3% uniform flips. Uniform and pair noise
    alone barely move the argmax of the default model (data/README.md, "Label noise").
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    uniform: float = Field(
        default=0.03, ge=0.0, le=1.0, description="Share of all rows flipped to another class."
    )
    pairs: tuple[PairNoise, ...] = Field(
        default=(PairNoise(classes=("0", "2"), rate=0.02),),
        description="Class-pair confusions.",
    )
    patterns: tuple[PatternNoise, ...] = Field(
        default=(PatternNoise(rate=0.2, weights=(1.0, 4.0, 1.0)),),
        description="Pattern noise rules.",
    )
    systematic: tuple[SystematicNoise, ...] = Field(
        default=DEFAULT_SYSTEMATIC,
        description="Systematic confusions: a sub-population given one specific wrong class.",
    )

    @model_validator(mode="after")
    def _unique_kinds(self) -> NoiseConfig:
        keys = [s.key for s in self.systematic] + [p.key for p in self.pairs]
        keys += [p.key for p in self.patterns]
        if len(set(keys)) != len(keys):
            raise ValueError(
                f"Expected each pair, pattern and systematic rule once, but got {keys}."
            )
        return self

    @classmethod
    def clean(cls) -> NoiseConfig:
        """No noise at all: observed labels equal the true labels."""
        return cls(uniform=0.0, pairs=(), patterns=(), systematic=())


# --------------------------------------------------------------------------------------------
# Text generation.

_SLOT = re.compile(r"\{([a-z_]+?)(2?)\}")


def _is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff"


def _is_ascii_word(char: str) -> bool:
    return char.isascii() and char.isalnum()


@cache
def _vocab_variant(name: str, pad_left: bool, pad_right: bool) -> np.ndarray:
    """VOCAB[name] as an object array, with a space where ASCII meets CJK (pangu spacing)."""
    values = []
    for value in VOCAB[name]:
        left = " " if pad_left and _is_ascii_word(value[0]) else ""
        right = " " if pad_right and _is_ascii_word(value[-1]) else ""
        values.append(f"{left}{value}{right}")
    return np.asarray(values, dtype=object)


@dataclass(frozen=True)
class _Part:
    """One slot of a template: its vocabulary, the padded values and the literal after it."""

    vocab: str
    second: bool
    values: np.ndarray
    literal: str


@dataclass(frozen=True)
class _Template:
    pattern: str
    probs: tuple[float, float, float]
    ambiguous: bool
    head: str
    parts: tuple[_Part, ...]


def _compile(pattern: str, probs: Probs) -> _Template:
    if not pattern.endswith("？"):
        raise ValueError(f"Expected every template to end with '？', but got {pattern!r}.")
    # literal, name, "2"|"", literal, ..., literal; the question mark comes back as a suffix
    pieces = _SLOT.split(pattern[:-1])
    head = pieces[0]
    parts = []
    for i in range(1, len(pieces), 3):
        name, second, after = pieces[i], pieces[i + 1], pieces[i + 2]
        before = pieces[i - 1]
        # A slot right after another slot counts as after a CJK character; the first slot of
        # a title gets no leading space.
        pad_left = (not before and i > 1) or (bool(before) and _is_cjk(before[-1]))
        pad_right = bool(after) and _is_cjk(after[0])
        parts.append(_Part(name, second == "2", _vocab_variant(name, pad_left, pad_right), after))
    return _Template(pattern, probs, max(probs) < 1.0, head, tuple(parts))


@cache
def _templates() -> tuple[tuple[_Template, ...], np.ndarray]:
    """All templates and the probability of drawing each (family weight / family size)."""
    compiled: list[_Template] = []
    weights: list[float] = []
    for family, entries in TEMPLATES.items():
        family_templates = [_compile(*_entry(family, entry)) for entry in entries]
        # Within a family, templates with more distinct fillings are drawn more often, so that
        # a 10-value template does not repeat the same few titles over and over.
        spread = np.sqrt([_fillings(t) for t in family_templates])
        compiled.extend(family_templates)
        weights.extend((FAMILY_WEIGHTS[family] * spread / spread.sum()).tolist())
    probabilities = np.asarray(weights) / np.sum(weights)
    return tuple(compiled), probabilities


def _entry(family: str, entry: str | tuple[str, Probs]) -> tuple[str, Probs]:
    """(pattern, class distribution) of one TEMPLATES entry."""
    if isinstance(entry, tuple):
        return entry
    one_hot = [0.0, 0.0, 0.0]
    one_hot[int(family)] = 1.0
    return entry, (one_hot[0], one_hot[1], one_hot[2])


def _fillings(template: _Template) -> int:
    """How many distinct titles the slots of a template can make (decorations aside)."""
    return int(np.prod([len(VOCAB[part.vocab]) for part in template.parts]))


def _decorations(
    options: tuple[str, ...], plain: str, count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` draws: ``plain`` with probability 1 - DECORATION_RATE, else one of ``options``."""
    table = np.asarray((plain, *options), dtype=object)
    decorated = rng.random(count) < DECORATION_RATE
    choice = np.where(decorated, rng.integers(1, len(table), count), 0)
    return table[choice]


def _fill(template: _Template, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` titles from one template, shape ``(count,)`` object (str)."""
    text = _decorations(DECORATION_PREFIXES, "", count, rng) + template.head
    first_choice: dict[str, np.ndarray] = {}
    for part in template.parts:
        size = len(VOCAB[part.vocab])
        if part.second and part.vocab in first_choice:
            # A different value than the first slot of the same vocabulary.
            choice = (first_choice[part.vocab] + rng.integers(1, size, count)) % size
        else:
            choice = rng.integers(0, size, count)
            first_choice[part.vocab] = choice
        text = text + part.values[choice] + part.literal
    return text + _decorations(DECORATION_SUFFIXES, "？", count, rng)


def _base_titles(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` fresh titles: (texts (count,) object, true labels (count,) int64, ambiguous)."""
    templates, probabilities = _templates()
    chosen = rng.choice(len(templates), size=count, p=probabilities)
    texts = np.empty(count, dtype=object)
    labels = np.empty(count, dtype=np.int64)
    ambiguous = np.zeros(count, dtype=bool)
    for index, template in enumerate(templates):
        rows = np.flatnonzero(chosen == index)
        if rows.size == 0:
            continue
        texts[rows] = _fill(template, rows.size, rng)
        if template.ambiguous:
            labels[rows] = rng.choice(_NUM_CLASSES, size=rows.size, p=template.probs)
            ambiguous[rows] = True
        else:
            labels[rows] = int(np.argmax(template.probs))
    return texts, labels, ambiguous


def _perturb(text: str, op: int, u: float) -> str:
    """One near-duplicate edit: 0 punctuation, 1 prefix, 2 spacing, 3 synonym.

    ``u`` in [0, 1) picks among the variants of the edit; the randomness is drawn up front
    (vectorised), so this stays a cheap pure function.
    """
    if op == 3:
        pairs = len(SYNONYMS) * 2
        start = int(u * pairs)
        for k in range(pairs):
            index = (start + k) % pairs
            a, b = SYNONYMS[index // 2]
            if index % 2:
                a, b = b, a
            if a in text:
                return text.replace(a, b, 1)
        op = 0
    if op == 2:
        if " " in text:
            return text.replace(" ", "")
        cut = 1 + int(u * max(len(text) - 2, 1))
        return f"{text[:cut]} {text[cut:]}"
    if op == 1 and not text.startswith(PREFIXES):
        return PREFIXES[int(u * len(PREFIXES))] + text
    ending = ("?", "", "？？", "。")[int(u * 4)]
    return (text[:-1] if text.endswith(("？", "?", "。")) else text) + ending


def _near_duplicate(text: str, u: list[float]) -> str:
    """A title a reader would call the same question: one edit, or two (30%); ``u`` 6 floats."""
    result = _perturb(text, int(u[1] * 4), u[2])
    if u[0] < 0.3:
        result = _perturb(result, int(u[3] * 4), u[4])
    if result == text:
        result = _perturb(text, 0, u[5])
    return result


def _split(n: int, prefix: str, rng: np.random.Generator, *, duplicate_rate: float) -> pd.DataFrame:
    """One split with ids ``{prefix}000001..``: id, text, group, true, ambiguous."""
    n_dup = min(_round_half_up(duplicate_rate * n), max(n - 1, 0))
    n_base = n - n_dup
    texts, labels, ambiguous = _base_titles(n_base, rng)
    source = rng.integers(0, n_base, n_dup) if n_base else np.zeros(0, dtype=np.int64)
    draws = rng.random((n_dup, 6)).tolist()
    dup_texts = np.asarray(
        [_near_duplicate(str(texts[i]), u) for i, u in zip(source.tolist(), draws, strict=True)],
        dtype=object,
    )
    base_of = np.concatenate([np.arange(n_base), source])
    order = rng.permutation(n)
    base_of = base_of[order]
    all_texts = np.concatenate([texts, dup_texts])[order]

    width = max(6, len(str(n)))
    ids = prefix + pd.Series(np.arange(1, n + 1)).astype("str").str.zfill(width)
    # A group is named after the id of its first member in the shuffled order.
    first_position = np.full(n_base, n, dtype=np.int64)
    np.minimum.at(first_position, base_of, np.arange(n))
    group = "g" + ids.iloc[first_position[base_of]].reset_index(drop=True)
    return pd.DataFrame(
        {
            "id": ids.astype("str"),
            "text": pd.Series(all_texts, dtype="str"),
            "group": group.astype("str"),
            "true": labels[base_of],
            "ambiguous": ambiguous[base_of],
        }
    )


def _choose(candidates: np.ndarray, count: int, rng: np.random.Generator, what: str) -> np.ndarray:
    if count > candidates.size:
        raise ValueError(
            f"Expected enough rows for {what}: it needs {count} rows but only "
            f"{candidates.size} are left after the earlier noise kinds. Lower the rates."
        )
    return np.sort(rng.choice(candidates, size=count, replace=False))


def _apply_noise(
    texts: pd.Series, true: np.ndarray, noise: NoiseConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Observed labels (N,) int64 and the noise kind of each row (N,) object ('' = clean)."""
    n = true.size
    observed = true.copy()
    kind = np.full(n, "", dtype=object)
    free = np.ones(n, dtype=bool)
    for confusion in noise.systematic:
        selected = confusion.selected(texts, true)
        rows = _choose(
            np.flatnonzero(selected & free),
            _round_half_up(confusion.rate * int(selected.sum())),
            rng,
            confusion.key,
        )
        observed[rows] = int(confusion.target)
        kind[rows] = confusion.key
        free[rows] = False
    for rule in noise.patterns:
        matching = texts.str.contains(rule.pattern, regex=True).to_numpy(dtype=bool)
        weights = np.asarray(rule.weights or (1.0, 1.0, 1.0), dtype=np.float64)
        # A row whose only allowed wrong labels have weight 0 cannot be relabelled.
        others = np.tile(weights, (n, 1))
        others[np.arange(n), true] = 0.0
        eligible = matching & (others.sum(axis=1) > 0)
        rows = _choose(
            np.flatnonzero(eligible & free),
            _round_half_up(rule.rate * int(eligible.sum())),
            rng,
            rule.key,
        )
        probs = others[rows] / others[rows].sum(axis=1, keepdims=True)
        cumulative = np.cumsum(probs, axis=1)
        draws = rng.random(rows.size)[:, None]
        observed[rows] = np.minimum((draws > cumulative).sum(axis=1), _NUM_CLASSES - 1)
        kind[rows] = rule.key
        free[rows] = False
    for pair in noise.pairs:
        a, b = (int(c) for c in pair.classes)
        in_pair = (true == a) | (true == b)
        rows = _choose(
            np.flatnonzero(in_pair & free),
            _round_half_up(pair.rate * int(in_pair.sum())),
            rng,
            pair.key,
        )
        observed[rows] = np.where(true[rows] == a, b, a)
        kind[rows] = pair.key
        free[rows] = False
    rows = _choose(np.flatnonzero(free), _round_half_up(noise.uniform * n), rng, "uniform")
    observed[rows] = (true[rows] + rng.integers(1, _NUM_CLASSES, rows.size)) % _NUM_CLASSES
    kind[rows] = "uniform"
    return observed, kind


def _names(indices: np.ndarray) -> pd.Series:
    """Class indices (N,) -> their names "0"/"1"/"2" as a str Series."""
    return pd.Series(np.asarray(list(CLASSES), dtype=object)[indices], dtype="str")


def generate_demo(
    *,
    n_train: int = 20000,
    n_eval: int = 4000,
    n_unlabeled: int = 40000,
    noise: NoiseConfig | None = None,
    seed: int = 0,
    duplicate_rate: float = NEAR_DUPLICATE_RATE,
) -> dict[str, pd.DataFrame]:
    """Generate the demo splits, deterministically for a seed.

    Args:
        n_train: rows in the noisy training split.
        n_eval: rows in the clean eval split (``label == true_label``).
        n_unlabeled: rows in the unlabeled pool (``label`` null, ``true_label`` hidden).
        noise: label noise of the training split; default :class:`NoiseConfig()`.
        seed: the seed; each split and the noise draw from their own child seeds.
        duplicate_rate: share of each split's rows that are near-duplicates of another row.

    Returns:
        ``{"train", "eval", "unlabeled"}`` -> frame with columns ``id`` (``t000001``,
        ``e000001``, ``u000001``...), ``text``, ``label`` ("0"/"1"/"2", observed),
        ``group`` (near-duplicates share one), ``true_label`` (hidden truth), ``noise``
        (which noise kind changed the label, '' if none) and ``ambiguous`` (bool: drawn from
        an ambiguous template).

    Raises:
        ValueError: negative sizes, or noise rates that need more rows than are left.
    """
    sizes = {"train": n_train, "eval": n_eval, "unlabeled": n_unlabeled}
    negative = {k: v for k, v in sizes.items() if v < 0}
    if negative:
        raise ValueError(f"Expected non-negative split sizes, but got {negative}.")
    if not 0.0 <= duplicate_rate < 1.0:
        raise ValueError(f"Expected duplicate_rate in [0, 1), but got {duplicate_rate}.")
    noise = noise if noise is not None else NoiseConfig()
    streams = np.random.SeedSequence(seed).spawn(4)
    frames: dict[str, pd.DataFrame] = {}
    for (split, n), prefix, stream in zip(sizes.items(), "teu", streams[:3], strict=True):
        rng = np.random.default_rng(stream)
        frame = _split(n, prefix, rng, duplicate_rate=duplicate_rate)
        true = frame.pop("true").to_numpy(dtype=np.int64)
        if split == "train":
            observed, kind = _apply_noise(
                frame["text"], true, noise, np.random.default_rng(streams[3])
            )
            label = _names(observed)
        else:
            kind = np.full(n, "", dtype=object)
            label = _names(true) if split == "eval" else pd.Series(np.full(n, np.nan), dtype="str")
        ambiguous = frame.pop("ambiguous")
        frame.insert(2, "label", label)
        frame["true_label"] = _names(true)
        frame["noise"] = pd.Series(kind, dtype="str")
        frame["ambiguous"] = ambiguous
        frames[split] = frame
    return frames


def realised_noise(frame: pd.DataFrame, noise: NoiseConfig) -> dict[str, dict[str, Any]]:
    """Measured noise of a generated split: per kind the rows changed, the base and the rate.

    The base is what the kind's rate is relative to (matching rows, rows in the pair, all rows).
    """
    n = len(frame)
    true = frame["true_label"]
    kinds = frame["noise"]
    report: dict[str, dict[str, Any]] = {}
    for confusion in noise.systematic:
        base = int(confusion.selected(frame["text"], true.to_numpy(dtype=object)).sum())
        report[confusion.key] = _rate(int((kinds == confusion.key).sum()), base, confusion.rate)
    for rule in noise.patterns:
        base = int(frame["text"].str.contains(rule.pattern, regex=True).sum())
        report[rule.key] = _rate(int((kinds == rule.key).sum()), base, rule.rate)
    for pair in noise.pairs:
        base = int(true.isin(list(pair.classes)).sum())
        report[pair.key] = _rate(int((kinds == pair.key).sum()), base, pair.rate)
    report["uniform"] = _rate(int((kinds == "uniform").sum()), n, noise.uniform)
    wrong = int((frame["label"] != true).sum())
    report["total"] = _rate(wrong, n, None)
    return report


def _rate(rows: int, base: int, requested: float | None) -> dict[str, Any]:
    return {
        "rows": rows,
        "base": base,
        "rate": rows / base if base else 0.0,
        "requested": requested,
    }


def demo_sizes(size: str | int) -> dict[str, int]:
    """Split sizes for a named size (``tiny``/``small``/``demo``) or a training-row count ``N``.

    ``N`` gives ``N`` training rows, ``N // 5`` eval rows and ``N`` unlabeled rows.

    Raises:
        ValueError: an unknown name (the message lists the valid ones) or a non-positive N.
    """
    if isinstance(size, str) and not size.isdigit():
        if size not in DEMO_SIZES:
            raise ValueError(
                f"Expected a size among {sorted(DEMO_SIZES)} or a positive integer, but got "
                f"{size!r}."
            )
        return dict(DEMO_SIZES[size])
    n = int(size)
    if n <= 0:
        raise ValueError(f"Expected a positive number of training rows, but got {n}.")
    return {"n_train": n, "n_eval": max(n // 5, 1), "n_unlabeled": n}


def write_demo(
    out_dir: str | os.PathLike[str],
    *,
    n_train: int = 20000,
    n_eval: int = 4000,
    n_unlabeled: int = 40000,
    noise: NoiseConfig | None = None,
    seed: int = 0,
) -> dict[str, Path]:
    """Generate the demo data and write ``{train,eval,unlabeled}.parquet`` + ``meta.json``.

    Each file is written atomically (temporary file, then rename); ``meta.json`` (sizes, noise
    request, realised noise rates, class counts, seed, generator version) is written last, so
    its presence means the data files are complete.

    Returns:
        ``{"train", "eval", "unlabeled", "meta"}`` -> path.
    """
    noise = noise if noise is not None else NoiseConfig()
    out = Path(out_dir)
    frames = generate_demo(
        n_train=n_train, n_eval=n_eval, n_unlabeled=n_unlabeled, noise=noise, seed=seed
    )
    paths: dict[str, Path] = {}
    for split, frame in frames.items():
        paths[split] = save_dataset(frame, out / f"{split}.parquet")
    meta = demo_meta(frames, noise=noise, seed=seed)
    text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    paths["meta"] = _atomic_write(
        out / "meta.json", lambda tmp: tmp.write_text(text, encoding="utf-8")
    )
    return paths


def demo_meta(
    frames: Mapping[str, pd.DataFrame], *, noise: NoiseConfig, seed: int
) -> dict[str, Any]:
    """What ``meta.json`` records about generated frames (no timestamps: it is deterministic)."""
    return {
        "generator": "cartoflow.demo",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "classes": CLASSES,
        "sizes": {split: len(frame) for split, frame in frames.items()},
        "noise": noise.model_dump(mode="json"),
        "realised_noise": realised_noise(frames["train"], noise) if "train" in frames else {},
        "class_counts": {
            split: {
                str(k): int(v) for k, v in frame["true_label"].value_counts().sort_index().items()
            }
            for split, frame in frames.items()
        },
        "ambiguous_rows": {split: int(frame["ambiguous"].sum()) for split, frame in frames.items()},
        "groups": {split: int(frame["group"].nunique()) for split, frame in frames.items()},
        "near_duplicate_rate": NEAR_DUPLICATE_RATE,
        "family_weights": FAMILY_WEIGHTS,
        "templates": {family: len(entries) for family, entries in TEMPLATES.items()},
    }
